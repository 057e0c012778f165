/**
 * Raw protocol peers, for tests that speak burrow's protocol by hand (to
 * send what a real client never would): a recorded TLS link from any
 * loopback source, frames of any JSON or any length prefix, a logged-in
 * control session, and the clocks and counters hostile tests measure.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as net from "node:net";
import * as tls from "node:tls";
import {
  CLIENT_PREAMBLE,
  type ClientMessage,
  FrameReader,
  FrameWriter,
  parseServerMessage,
  PROTOCOL_VERSION,
  type ServerMessage,
} from "../../lib/protocol/protocol.ts";
import { newId, prove, type Secret } from "../../lib/util/secret.ts";
import { dialControl, suiteCa } from "./harness.ts";

const encoder = new TextEncoder();

/** A `hello` for `group` answering `nonce`, proven with `secret` (any `client` string, even a hostile one). */
export async function helloFor(
  secret: Secret,
  nonce: string,
  group: string,
  o: { client?: string; runId?: string } = {},
): Promise<Extract<ClientMessage, { type: "hello" }>> {
  const runId = o.runId ?? newId();
  return {
    type: "hello",
    version: PROTOCOL_VERSION,
    client: o.client ?? "hostile",
    group,
    runId,
    proof: await prove(secret, nonce, "control", group, runId),
  };
}

/** A control session logged in by hand: `close()` (or `using`) ends it. */
export interface RawSession extends Disposable {
  readonly conn: Deno.Conn;
  readonly reader: FrameReader;
  readonly writer: FrameWriter;
  /** The server's `welcome`. */
  readonly welcome: Extract<ServerMessage, { type: "welcome" }>;
  close(): void;
}

/**
 * Dials a server's control port (TLS against the suite's CA), reads the
 * challenge and logs `group` in with `secret`; fails unless welcomed.
 */
export async function rawSession(
  port: number,
  secret: Secret,
  group: string,
  o: { client?: string; runId?: string } = {},
): Promise<RawSession> {
  const conn = await dialControl(port);
  const close = () => closeConn(conn);
  try {
    const reader = new FrameReader(conn);
    const writer = new FrameWriter(conn);
    const challenge = parseServerMessage(await reader.read(5000));
    assert.equal(challenge.type, "challenge");
    await writer.send(await helloFor(secret, challenge.nonce, group, o));
    const welcome = parseServerMessage(await reader.read(5000));
    assert.equal(welcome.type, "welcome");
    return { conn, reader, writer, welcome, close, [Symbol.dispose]: close };
  } catch (err) {
    close();
    throw err;
  }
}

/**
 * A TLS connection to the server from a chosen loopback source, with
 * burrow's framing done by hand. Every event is recorded, so a test can ask
 * whether the TLS handshake completed, which frames came, and when (and
 * whether) the server hung up.
 */
export class Link {
  readonly opened = performance.now();
  /** Resolves true once TLS is up, false if the connection ended first. */
  readonly secured: Promise<boolean>;
  /** Resolves to ms since `opened` when the connection has ended, for any reason. */
  readonly closed: Promise<number>;
  readonly frames: unknown[] = [];
  #sock: tls.TLSSocket;
  #buf = new Uint8Array(0);
  #ended = false;
  #wake: Array<() => void> = [];

  /** Connects from `source`; once TLS is up, sends the preamble unless `preamble` is false. */
  constructor(source: string, port: number, preamble = true) {
    const raw = net.connect({ host: "127.0.0.1", port, localAddress: source });
    raw.on("error", () => {});
    this.#sock = tls.connect({ socket: raw, ca: suiteCa(), servername: "burrow-server" });
    this.#sock.on("error", () => {});
    this.secured = new Promise((resolve) => {
      this.#sock.once("secureConnect", () => {
        if (preamble) this.#sock.write(CLIENT_PREAMBLE);
        resolve(true);
      });
      this.#sock.once("close", () => resolve(false));
    });
    this.closed = new Promise((resolve) => {
      this.#sock.once("close", () => {
        this.#ended = true;
        raw.destroy();
        this.#notify();
        resolve(performance.now() - this.opened);
      });
    });
    this.#sock.on("data", (chunk: Uint8Array) => {
      const next = new Uint8Array(this.#buf.length + chunk.length);
      next.set(this.#buf);
      next.set(chunk, this.#buf.length);
      this.#buf = next;
      this.#parse();
      this.#notify();
    });
  }

  get ended(): boolean {
    return this.#ended;
  }

  #notify(): void {
    for (const wake of this.#wake.splice(0)) wake();
  }

  #parse(): void {
    while (this.#buf.length >= 4) {
      const length = new DataView(this.#buf.buffer, this.#buf.byteOffset).getUint32(0);
      if (this.#buf.length < 4 + length) return;
      this.frames.push(JSON.parse(new TextDecoder().decode(this.#buf.subarray(4, 4 + length))));
      this.#buf = this.#buf.slice(4 + length);
    }
  }

  /** The frame at `index` (0: the challenge), or null if the server hung up or `ms` passed first. */
  async frame(index: number, ms = 5_000): Promise<ServerMessage | null> {
    const deadline = performance.now() + ms;
    while (this.frames.length <= index) {
      const left = deadline - performance.now();
      if (this.#ended || left <= 0) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return parseServerMessage(this.frames[index]);
  }

  /** The challenge's nonce. */
  async nonce(): Promise<string> {
    const challenge = await this.frame(0);
    assert.equal(challenge?.type, "challenge", "no challenge");
    return (challenge as Extract<ServerMessage, { type: "challenge" }>).nonce;
  }

  write(bytes: Uint8Array): void {
    if (!this.#ended) this.#sock.write(bytes);
  }

  send(message: Record<string, unknown>): void {
    this.write(frameOf(message));
  }

  destroy(): void {
    this.#sock.destroy();
  }
}

/** A frame of any JSON, even one the protocol's types reject. */
export function frameOf(message: unknown): Uint8Array {
  const body = encoder.encode(JSON.stringify(message));
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** A length prefix followed by `body`. */
export function prefixed(length: number, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, length);
  out.set(body, 4);
  return out;
}

/**
 * Resolves to ms until the server hung up on `conn` (EOF or reset), or
 * Infinity if it was still open after `ms` (then closed here).
 */
export async function hangUp(
  conn: Deno.Conn,
  ms: number,
  started = performance.now(),
): Promise<number> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch { /* closed */ }
  }, Math.max(0, ms - (performance.now() - started)));
  const buf = new Uint8Array(64 * 1024);
  try {
    while ((await conn.read(buf)) !== null) { /* the challenge, then nothing */ }
  } catch { /* a reset */ }
  clearTimeout(timer);
  if (timedOut) return Infinity;
  try {
    conn.close();
  } catch { /* closed */ }
  return performance.now() - started;
}

/** Runs `fn(0..count-1)` with at most `width` at a time; results in order. */
export async function inWaves<T>(count: number, width: number, fn: (i: number) => Promise<T>) {
  const out: T[] = new Array(count);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, count) }, async () => {
    while (next < count) {
      const i = next++;
      out[i] = await fn(i);
    }
  }));
  return out;
}

export function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = Number(status.match(/^VmRSS:\s+(\d+) kB$/m)?.[1]);
  assert.ok(kb > 0, "no VmRSS");
  return Math.round(kb / 102.4) / 10;
}

export function closeConn(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed */ }
}
