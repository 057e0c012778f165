/**
 * Bytes over sockets for tests: write and read exactly, random payloads and
 * their SHA-256, an echo round trip through a public port, raw connections
 * to the control port (as a client opens them) and from other loopback
 * addresses, resets, and waiting for a port to close.
 *
 * @module
 */

import { CLIENT_PREAMBLE } from "../../lib/protocol/protocol.ts";
import { SUITE_STATE } from "./process.ts";

/** Writes every byte. */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Reads until EOF (or `limit` bytes). */
export async function readAll(conn: Deno.Conn, limit = Infinity): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(256 * 1024);
  while (total < limit) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    total += n;
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** Random bytes of any size (getRandomValues caps one call at 64 KiB). */
export function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  for (let off = 0; off < size; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(size, off + 65536)));
  }
  return out;
}

/** SHA-256 as hex. */
export async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Sends `data` through a public port to an echo app, half-closes, reads the
 * echo to EOF, and returns the SHA-256 of what came back.
 */
export async function echoThrough(
  port: number,
  data: Uint8Array<ArrayBuffer>,
  hostname = "127.0.0.1",
): Promise<string> {
  const conn = await Deno.connect({ hostname, port });
  try {
    const [, back] = await Promise.all([
      writeAll(conn, data).then(() => conn.closeWrite()),
      readAll(conn),
    ]);
    return await sha256(back as Uint8Array<ArrayBuffer>);
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/**
 * Sends `size` random bytes through a public port to an echo app and checks
 * the same bytes come back (by SHA-256).
 */
export async function assertEchoes(
  port: number,
  size = 256 * 1024,
  hostname = "127.0.0.1",
): Promise<void> {
  const data = randomBytes(size);
  const [back, sent] = await Promise.all([echoThrough(port, data, hostname), sha256(data)]);
  if (back !== sent) throw new Error(`echo through port ${port}: sha256 ${back}, sent ${sent}`);
}

/**
 * Copies `src` to `dst` until `src` ends or either side fails, then closes
 * both: one direction of a test relay.
 */
export async function pump(src: Deno.Conn, dst: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (let n = await src.read(buf); n !== null; n = await src.read(buf)) {
      await writeAll(dst, buf.subarray(0, n));
    }
  } catch { /* reset, or closed */ }
  for (const c of [src, dst]) {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

/** Resolves true once connecting to the port is refused, polling every 50 ms up to `timeoutMs`. */
export async function waitRefused(port: number, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
    } catch (err) {
      if (err instanceof Deno.errors.ConnectionRefused) return true;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/**
 * Connects and resets at once (RST, not FIN), before the server can accept:
 * Deno has no SO_LINGER, but node:net's resetAndDestroy sends a reset.
 */
export async function connectAndReset(port: number): Promise<void> {
  const { connect } = await import("node:net");
  await new Promise<void>((resolve) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.resetAndDestroy();
      resolve();
    });
    socket.on("error", () => resolve());
  });
}

/**
 * True once the peer has closed `conn` fully (not half): after its FIN, one
 * written byte draws a RST, so a later read or write fails. False if that
 * does not happen within `timeoutMs` (a half-closed or still open peer);
 * then `conn` is closed.
 */
export async function fullyClosed(conn: Deno.TcpConn, timeoutMs = 2000): Promise<boolean> {
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    try {
      conn.close();
    } catch { /* closed */ }
  }, timeoutMs);
  try {
    await conn.write(new Uint8Array([1])).catch(() => {});
    const buf = new Uint8Array(16);
    while (!late) {
      try {
        const n = await conn.read(buf);
        if (n === null && !late) {
          // EOF again: write once more; a RST on a fully closed socket shows up now.
          await conn.write(new Uint8Array([1]));
          await new Promise((r) => setTimeout(r, 10));
        }
      } catch {
        return !late; // reset or broken pipe: the far end is gone (unless we closed it)
      }
    }
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** The CA the suite's servers share (made by the first server started). */
export function suiteCa(): string {
  return Deno.readTextFileSync(`${SUITE_STATE}/burrow/tls/ca.pem`);
}

/**
 * A raw connection to a server's control port, as a client opens one: TLS
 * against the suite's CA (unless `tls` is false), then the preamble (unless
 * `preamble` is false). For tests that speak the protocol by hand.
 */
export async function dialControl(
  port: number,
  o: { tls?: boolean; preamble?: boolean } = {},
): Promise<Deno.Conn> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  const conn: Deno.Conn = o.tls === false
    ? tcp
    : await Deno.startTls(tcp, { hostname: "burrow-server", caCerts: [suiteCa()] });
  if (o.preamble !== false) await writeAll(conn, CLIENT_PREAMBLE);
  return conn;
}

/**
 * An idle TCP connection to `port` from `source`, another loopback address
 * (127.0.0.2 and up: Linux routes all of 127/8 to lo), so tests can play
 * several hosts. Resolves once connected; `destroy()` closes it.
 */
export async function connectFrom(
  source: string,
  port: number,
): Promise<{ destroy(): void }> {
  const { connect } = await import("node:net");
  return await new Promise((resolve, reject) => {
    const socket = connect(
      { host: "127.0.0.1", port, localAddress: source },
      () => resolve(socket),
    );
    socket.once("error", reject);
  });
}
