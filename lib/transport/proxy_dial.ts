/**
 * Dialling a `HOST:PORT` through a proxy, for clients on networks that let
 * nothing else out: HTTP CONNECT (with `Proxy-Authorization: Basic` when the
 * URL has credentials) or SOCKS5 (RFC 1928; no authentication, or
 * username/password per RFC 1929; the target sent by name, so the proxy
 * resolves it, or as an IP address; the SOCKS5 side is `socks5.ts`).
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
import type { ProxyConfig } from "./proxy_url.ts";
import { ProxyError, writeExactly } from "./proxy_error.ts";
import { socks5Connect, SOCKS_VERSION } from "./socks5.ts";

export { ProxyError, type ProxyFailure } from "./proxy_error.ts";

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
  await writeExactly(conn, encoder.encode(lines.join("\r\n") + "\r\n\r\n"));
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
