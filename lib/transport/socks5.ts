/**
 * Dialling through a SOCKS5 proxy (RFC 1928; no authentication, or
 * username/password per RFC 1929; the target sent by name, so the proxy
 * resolves it, or as an IP address). Replies have known lengths and are
 * read exactly. Failures are `ProxyError`s naming the proxy.
 *
 * @module
 */

import { formatHostPort, type HostPort } from "../util/addr.ts";
import { parseIp } from "../util/cidr.ts";
import type { ProxyConfig } from "./proxy_url.ts";
import { ProxyError, type ProxyFailure, writeExactly } from "./proxy_error.ts";

const encoder = new TextEncoder();

// ---------------------------------------------------------------- SOCKS5

/** The version byte every SOCKS5 message starts with. */
export const SOCKS_VERSION = 0x05;
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

/** Asks the SOCKS5 proxy on `conn` for a tunnel to `target`. Rejects with `ProxyError`. */
export async function socks5Connect(
  conn: Deno.TcpConn,
  proxy: ProxyConfig,
  target: HostPort,
): Promise<void> {
  const fail = (code: ProxyFailure, text: string) =>
    new ProxyError(code, proxy.display, `the proxy ${proxy.display} ${text}`);
  const methods = proxy.credentials ? [METHOD_NONE, METHOD_PASSWORD] : [METHOD_NONE];
  await writeExactly(conn, Uint8Array.of(SOCKS_VERSION, methods.length, ...methods));
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
  await writeExactly(conn, request);
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
  await writeExactly(conn, request);
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
