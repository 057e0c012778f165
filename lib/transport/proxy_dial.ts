/**
 * Dialling a `HOST:PORT` through a proxy, for clients on networks that let
 * nothing else out: HTTP CONNECT (with `Proxy-Authorization: Basic` when the
 * URL has credentials) or SOCKS5 (RFC 1928; no authentication, or
 * username/password per RFC 1929; the target sent by name, so the proxy
 * resolves it, or as an IP address).
 *
 * The result is the raw `Deno.TcpConn` to the proxy, now a tunnel to the
 * target, so `Deno.startTls` runs on it as on any TCP connection. The HTTP
 * reply is read with a bounded buffer; bytes the target sent in the same
 * segment as the reply are handed back as `early` (burrow's client speaks
 * first, so there are none unless a proxy misbehaves). SOCKS5 replies have
 * known lengths and are read exactly.
 *
 * Failures are `ProxyError`s naming the proxy (password masked) and what
 * went wrong, as one line a user can act on.
 *
 * @module
 */

import { formatHostPort, type HostPort } from "../util/addr.ts";
import { parseIp } from "../util/cidr.ts";
import type { ProxyConfig } from "./proxy_url.ts";

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

/** A tunnel through a proxy to the target. */
export interface ProxiedConn {
  /** The TCP connection to the proxy, now carrying the target's bytes both ways. */
  conn: Deno.TcpConn;
  /** Bytes of the target that came with the proxy's reply (usually none). */
  early: Uint8Array;
}

/** Longest HTTP reply header read from a proxy. Real ones are a few hundred bytes. */
export const MAX_REPLY_HEADER_BYTES = 16 * 1024;

const encoder = new TextEncoder();

/**
 * Connects to `target` through `proxy`, all of it (the TCP connect and the
 * proxy's handshake) within `timeoutMs`. Rejects with `ProxyError`.
 */
export async function dialViaProxy(
  proxy: ProxyConfig,
  target: HostPort,
  timeoutMs: number,
): Promise<ProxiedConn> {
  let conn: Deno.TcpConn | undefined;
  let expired = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const attempt = (async () => {
    conn = await connectToProxy(proxy);
    if (expired) throw new ProxyError("timeout", proxy.display, "");
    conn.setNoDelay(true);
    const early = proxy.kind === "http"
      ? await httpConnect(conn, proxy, target)
      : (await socks5Connect(conn, proxy, target), new Uint8Array());
    return { conn, early };
  })();
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      expired = true;
      conn?.close(); // a pending read ends; a late connect is closed by the attempt
      reject(
        new ProxyError(
          "timeout",
          proxy.display,
          `the proxy ${proxy.display} did not connect to ${formatHostPort(target)} within ` +
            `${timeoutMs / 1000}s`,
        ),
      );
    }, timeoutMs);
  });
  attempt.catch(() => {});
  try {
    return await Promise.race([attempt, timeout]);
  } catch (err) {
    if (!expired) closeQuietly(conn);
    throw err instanceof ProxyError ? err : lost(proxy, err);
  } finally {
    clearTimeout(timer);
  }
}

async function connectToProxy(proxy: ProxyConfig): Promise<Deno.TcpConn> {
  try {
    return await Deno.connect({ ...proxy.address, transport: "tcp" });
  } catch (err) {
    throw new ProxyError(
      "unreachable",
      proxy.display,
      `cannot reach the proxy ${proxy.display}: ${reason(err)}`,
    );
  }
}

/** A network error in the middle of a handshake: the proxy dropped us. */
function lost(proxy: ProxyConfig, err: unknown): ProxyError {
  return new ProxyError(
    "unreachable",
    proxy.display,
    `lost the connection to the proxy ${proxy.display}: ${reason(err)}`,
  );
}

function reason(err: unknown): string {
  if (err instanceof Deno.errors.ConnectionRefused) return "connection refused";
  if (err instanceof Deno.errors.ConnectionReset) return "connection reset";
  if (err instanceof Deno.errors.TimedOut) return "timed out";
  return err instanceof Error ? err.message : String(err);
}

function closeQuietly(conn: Deno.Conn | undefined): void {
  try {
    conn?.close();
  } catch {
    // already closed
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

// ---------------------------------------------------------------- HTTP CONNECT

/** Sends CONNECT, reads the reply header; returns the bytes after it. */
async function httpConnect(
  conn: Deno.TcpConn,
  proxy: ProxyConfig,
  target: HostPort,
): Promise<Uint8Array> {
  const authority = formatHostPort(target);
  const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
  if (proxy.credentials) {
    const basic = `${proxy.credentials.user}:${proxy.credentials.pass.reveal()}`;
    lines.push(`Proxy-Authorization: Basic ${base64(encoder.encode(basic))}`);
  }
  await writeAll(conn, encoder.encode(lines.join("\r\n") + "\r\n\r\n"));
  const { head, rest } = await readReplyHeader(conn, proxy);
  const status = /^HTTP\/1\.[01] (\d{3})(?: ([^\r\n]*))?/.exec(head);
  if (!status) {
    throw new ProxyError(
      "protocol",
      proxy.display,
      `the proxy ${proxy.display} did not answer as an HTTP proxy: "${printable(head)}"`,
    );
  }
  const code = Number(status[1]);
  const said = `${code}${status[2] ? ` ${status[2].trim()}` : ""}`;
  if (code >= 200 && code < 300) return rest;
  // 407 is the standard answer; tinyproxy says 401 to credentials it rejects.
  if (code === 407 || code === 401) {
    throw proxy.credentials
      ? new ProxyError(
        "auth_rejected",
        proxy.display,
        `the proxy ${proxy.display} rejected the credentials (${said})`,
      )
      : new ProxyError(
        "needs_credentials",
        proxy.display,
        `the proxy ${proxy.display} asks for credentials (${said}): ` +
          `give them as http://USER:PASS@HOST:PORT`,
      );
  }
  throw new ProxyError(
    "refused",
    proxy.display,
    `the proxy ${proxy.display} refused to connect to ${authority}: ${said}`,
  );
}

/** Reads up to the blank line ending the reply header, within {@linkcode MAX_REPLY_HEADER_BYTES}. */
async function readReplyHeader(
  conn: Deno.TcpConn,
  proxy: ProxyConfig,
): Promise<{ head: string; rest: Uint8Array }> {
  const buf = new Uint8Array(MAX_REPLY_HEADER_BYTES);
  let filled = 0;
  while (true) {
    const end = headerEnd(buf, filled);
    if (end >= 0) {
      return {
        head: new TextDecoder("latin1").decode(buf.subarray(0, end)),
        rest: buf.slice(end, filled),
      };
    }
    if (filled === buf.length) {
      throw new ProxyError(
        "protocol",
        proxy.display,
        `the proxy ${proxy.display} sent a reply header over ${MAX_REPLY_HEADER_BYTES} bytes`,
      );
    }
    const n = await conn.read(buf.subarray(filled));
    if (n === null && buf[0] === SOCKS_VERSION) {
      throw new ProxyError(
        "protocol",
        proxy.display,
        `the proxy ${proxy.display} answered in SOCKS5: write its URL as socks5://`,
      );
    }
    if (n === null) {
      throw new ProxyError(
        "protocol",
        proxy.display,
        filled === 0
          ? `the proxy ${proxy.display} closed the connection without answering ` +
            `(is it an HTTP proxy?)`
          : `the proxy ${proxy.display} closed the connection in the middle of its reply: ` +
            `"${printable(new TextDecoder("latin1").decode(buf.subarray(0, filled)))}"`,
      );
    }
    filled += n;
  }
}

/** Offset just past the first CRLF CRLF in `buf[0, filled)`, or -1. */
function headerEnd(buf: Uint8Array, filled: number): number {
  for (let i = 3; i < filled; i++) {
    if (buf[i] === 0x0a && buf[i - 1] === 0x0d && buf[i - 2] === 0x0a && buf[i - 3] === 0x0d) {
      return i + 1;
    }
  }
  return -1;
}

/** The first line of a reply, at most 80 characters, control bytes shown as `.`. */
function printable(text: string): string {
  const line = text.split(/\r?\n/)[0] ?? "";
  // deno-lint-ignore no-control-regex
  const clean = line.replace(/[\x00-\x1f\x7f-\xff]/g, ".");
  return clean.length > 80 ? `${clean.slice(0, 80)}...` : clean;
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

// ---------------------------------------------------------------- SOCKS5

const SOCKS_VERSION = 0x05;
const METHOD_NONE = 0x00;
const METHOD_PASSWORD = 0x02;
const METHOD_UNACCEPTABLE = 0xff;
const CMD_CONNECT = 0x01;
const ATYP_IPV4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_IPV6 = 0x04;

/** RFC 1928's reply codes, as the message says them. */
const SOCKS_REPLIES: Record<number, string> = {
  1: "general SOCKS server failure",
  2: "connection not allowed by ruleset",
  3: "network unreachable",
  4: "host unreachable",
  5: "connection refused",
  6: "TTL expired",
  7: "command not supported",
  8: "address type not supported",
};

async function socks5Connect(
  conn: Deno.TcpConn,
  proxy: ProxyConfig,
  target: HostPort,
): Promise<void> {
  const fail = (code: ProxyFailure, text: string) =>
    new ProxyError(code, proxy.display, `the proxy ${proxy.display} ${text}`);
  const methods = proxy.credentials ? [METHOD_NONE, METHOD_PASSWORD] : [METHOD_NONE];
  await writeAll(conn, Uint8Array.of(SOCKS_VERSION, methods.length, ...methods));
  const [version, method] = await readExact(conn, 2, proxy);
  if (version !== SOCKS_VERSION) {
    throw fail("protocol", `did not answer as a SOCKS5 proxy (version byte ${version})`);
  }
  if (method === METHOD_UNACCEPTABLE || !methods.includes(method!)) {
    throw proxy.credentials
      ? fail("auth_rejected", "accepts neither no authentication nor username/password")
      : fail(
        "needs_credentials",
        "asks for credentials: give them as socks5://USER:PASS@HOST:PORT",
      );
  }
  if (method === METHOD_PASSWORD) await socks5Login(conn, proxy);
  const request = socks5Request(target);
  if (request === undefined) {
    throw fail("refused", `cannot be given the host name ${target.hostname}: over 255 bytes`);
  }
  await writeAll(conn, request);
  const [replyVersion, reply, , atyp] = await readExact(conn, 4, proxy);
  if (replyVersion !== SOCKS_VERSION) {
    throw fail("protocol", `sent a reply of SOCKS version ${replyVersion}`);
  }
  if (reply !== 0) {
    const why = SOCKS_REPLIES[reply!] ?? "an unassigned error";
    throw fail(
      "refused",
      `refused to connect to ${formatHostPort(target)}: ${why} (reply ${reply})`,
    );
  }
  // The address the proxy bound for us: read past it, it tells us nothing we need.
  const size = atyp === ATYP_IPV4
    ? 4
    : atyp === ATYP_IPV6
    ? 16
    : atyp === ATYP_DOMAIN
    ? (await readExact(conn, 1, proxy))[0]!
    : -1;
  if (size < 0) throw fail("protocol", `sent a reply with address type ${atyp}`);
  await readExact(conn, size + 2, proxy);
}

/** RFC 1929: one version-1 request with the user name and password. */
async function socks5Login(conn: Deno.TcpConn, proxy: ProxyConfig): Promise<void> {
  const { user, pass } = proxy.credentials!;
  const u = encoder.encode(user);
  const p = encoder.encode(pass.reveal());
  const request = new Uint8Array(3 + u.length + p.length);
  request[0] = 0x01;
  request[1] = u.length;
  request.set(u, 2);
  request[2 + u.length] = p.length;
  request.set(p, 3 + u.length);
  await writeAll(conn, request);
  const [, status] = await readExact(conn, 2, proxy);
  if (status !== 0) {
    throw new ProxyError(
      "auth_rejected",
      proxy.display,
      `the proxy ${proxy.display} rejected the credentials (SOCKS5 status ${status})`,
    );
  }
}

/** A CONNECT request naming the target by IP address, or by name for the proxy to resolve. */
function socks5Request(target: HostPort): Uint8Array | undefined {
  const ip = parseIp(target.hostname);
  let address: Uint8Array;
  if (ip !== undefined) {
    address = Uint8Array.of(ip.length === 4 ? ATYP_IPV4 : ATYP_IPV6, ...ip);
  } else {
    const name = encoder.encode(target.hostname);
    if (name.length > 255) return undefined;
    address = Uint8Array.of(ATYP_DOMAIN, name.length, ...name);
  }
  const out = new Uint8Array(3 + address.length + 2);
  out.set([SOCKS_VERSION, CMD_CONNECT, 0x00]);
  out.set(address, 3);
  new DataView(out.buffer).setUint16(3 + address.length, target.port);
  return out;
}

/** Exactly `n` bytes, or a `ProxyError` when the proxy closes first. */
async function readExact(conn: Deno.TcpConn, n: number, proxy: ProxyConfig): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let off = 0; off < n;) {
    const got = await conn.read(out.subarray(off));
    if (got === null) {
      throw new ProxyError(
        "protocol",
        proxy.display,
        `the proxy ${proxy.display} closed the connection in the middle of the SOCKS5 ` +
          `handshake (is it a SOCKS5 proxy?)`,
      );
    }
    off += got;
  }
  return out;
}
