/**
 * Mux sessions for tests, connected over an in-memory pipe or a real
 * loopback TCP connection (through a relay the test can freeze, so that a
 * connection can die silently on TCP too), plus deterministic test bytes and
 * their digests.
 *
 * @module
 */

import { type ByteConn, MuxSession, type MuxSessionOptions } from "../../lib/transport/mux/mod.ts";
import { memoryPipe } from "./memory_pipe.ts";

/** How the two sessions are connected. */
export type Link = "memory" | "tcp";

/** Both links, for tests that run over each. */
export const LINKS: readonly Link[] = ["memory", "tcp"];

/** Options of one side, without the role (the rig sets it). */
export type SideOptions = Omit<MuxSessionOptions, "role">;

/** A connected client and server session. */
export interface MuxRig {
  client: MuxSession;
  server: MuxSession;
  /** The client's raw connection (closing it kills the link abruptly). */
  clientConn: ByteConn;
  /** The server's raw connection. */
  serverConn: ByteConn;
  /** Makes the link silently dead: nothing is delivered, nothing fails. */
  freeze(): void;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts a client and a server session over `link`. */
export async function muxRig(
  link: Link,
  client: SideOptions = {},
  server: SideOptions = {},
): Promise<MuxRig> {
  if (link === "memory") {
    const [a, b] = memoryPipe();
    return rigOf(a, b, client, server, () => a.cut(), () => {});
  }
  const relay = await Relay.start();
  return rigOf(
    relay.clientEnd,
    relay.serverEnd,
    client,
    server,
    () => relay.freeze(),
    () => relay.close(),
  );
}

function rigOf(
  clientConn: ByteConn,
  serverConn: ByteConn,
  client: SideOptions,
  server: SideOptions,
  freeze: () => void,
  cleanup: () => void,
): MuxRig {
  const c = new MuxSession(clientConn, { ...client, role: "client" });
  const s = new MuxSession(serverConn, { ...server, role: "server" });
  return {
    client: c,
    server: s,
    clientConn,
    serverConn,
    freeze,
    async [Symbol.asyncDispose]() {
      c.close();
      s.close();
      await Promise.all([c.closed, s.closed]);
      cleanup();
    },
  };
}

/**
 * client ⇄ relay ⇄ server over loopback TCP. The relay copies bytes both
 * ways until frozen; frozen, it holds everything, like a dead router.
 */
class Relay {
  clientEnd!: Deno.TcpConn;
  serverEnd!: Deno.TcpConn;
  #inner: Deno.TcpConn[] = [];
  #frozen = false;
  #thaw: Promise<void> = new Promise(() => {});
  #pumps: Promise<void>[] = [];

  static async start(): Promise<Relay> {
    const r = new Relay();
    using front = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    using back = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const [clientEnd, frontIn] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: front.addr.port }),
      front.accept(),
    ]);
    const [backOut, serverEnd] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: back.addr.port }),
      back.accept(),
    ]);
    r.clientEnd = clientEnd;
    r.serverEnd = serverEnd;
    r.#inner = [frontIn, backOut];
    r.#pumps = [r.#pump(frontIn, backOut), r.#pump(backOut, frontIn)];
    return r;
  }

  freeze(): void {
    this.#frozen = true;
  }

  close(): void {
    for (const c of [...this.#inner, this.clientEnd, this.serverEnd]) {
      try {
        c.close();
      } catch {
        // the session closed it already
      }
    }
  }

  async #pump(from: Deno.TcpConn, to: Deno.TcpConn): Promise<void> {
    const buf = new Uint8Array(256 * 1024);
    try {
      while (true) {
        const n = await from.read(buf);
        if (this.#frozen) await this.#thaw;
        if (n === null) {
          await to.closeWrite();
          return;
        }
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch {
      // a side closed: the test is ending or killing the link
      try {
        to.close();
      } catch {
        // closed already
      }
    }
  }
}

/** Deterministic bytes (xorshift32), so a failure reproduces. */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x;
  }
  return out;
}

/** Hex SHA-256 of `bytes`. */
export async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
  );
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Reads `stream` to its end; returns every byte. */
export async function readAll(
  stream: { read(p: Uint8Array): Promise<number | null> },
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(64 * 1024);
  while (true) {
    const n = await stream.read(buf);
    if (n === null) break;
    parts.push(buf.slice(0, n));
    total += n;
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Writes all of `bytes` in pieces of `piece` bytes, then half-closes. */
export async function writeAllThenClose(
  stream: { write(p: Uint8Array): Promise<number>; closeWrite(): Promise<void> },
  bytes: Uint8Array,
  piece = 100_000,
): Promise<void> {
  for (let off = 0; off < bytes.length; off += piece) {
    const part = bytes.subarray(off, Math.min(bytes.length, off + piece));
    let done = 0;
    while (done < part.length) done += await stream.write(part.subarray(done));
  }
  await stream.closeWrite();
}

/** Resolves once `check` holds, polling on macrotask turns; rejects after `ms`. */
export async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
