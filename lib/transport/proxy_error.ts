/**
 * The typed failure of dialling through a proxy, shared by the HTTP CONNECT
 * (`proxy_dial.ts`) and SOCKS5 (`socks5.ts`) dialers.
 *
 * @module
 */

/** Why a proxy could not give a tunnel, for programs to act on. */
export type ProxyFailure =
  /** The proxy itself cannot be reached, or dropped the connection. */
  | "unreachable"
  /** The proxy did not finish its handshake in time. */
  | "timeout"
  /** The proxy wants credentials and the URL has none. */
  | "needs_credentials"
  /** The proxy rejected the URL's credentials. */
  | "auth_rejected"
  /** The proxy would not (or could not) connect to the target. */
  | "refused"
  /** The proxy answered in a way neither HTTP CONNECT nor SOCKS5 allows. */
  | "protocol";

/**
 * A proxy failed to give a tunnel. `proxy` is its URL with the password
 * masked; the message names it, the target and the cause.
 *
 * @example
 * ```ts
 * import { dialViaProxy, ProxyError } from "./proxy_dial.ts";
 * import { parseProxyUrl } from "./proxy_url.ts";
 * const proxy = parseProxyUrl("socks5://127.0.0.1:1");
 * if (typeof proxy === "string") throw new Error(proxy);
 * try {
 *   await dialViaProxy(proxy, { hostname: "burrow.example", port: 7700 }, 5_000);
 * } catch (err) {
 *   if (err instanceof ProxyError) console.error(err.message); // cannot reach the proxy socks5://127.0.0.1:1: connection refused
 * }
 * ```
 */
export class ProxyError extends Error {
  /** Always `"ProxyError"`. */
  override name = "ProxyError";
  /** What went wrong. */
  readonly code: ProxyFailure;
  /** The proxy's URL, password masked. */
  readonly proxy: string;
  /**
   * Makes a proxy failure.
   *
   * @param code What went wrong.
   * @param proxy The proxy's URL, password masked.
   * @param message The whole line for the user, naming the proxy.
   */
  constructor(code: ProxyFailure, proxy: string, message: string) {
    super(message);
    this.code = code;
    this.proxy = proxy;
  }
}

/** Writes every byte of `bytes` to `conn`. */
export async function writeExactly(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}
