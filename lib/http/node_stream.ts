/**
 * A tunnel stream (burrow's {@linkcode Duplex}: `read`, `write`,
 * `closeWrite`, `close`) as a `node:stream` Duplex that `node:http` can
 * speak HTTP over, both as a client (an agent's `createConnection`) and as a
 * server (`server.emit("connection", socket)`).
 *
 * Reads go through one buffer owned by the stream; each chunk handed to
 * node is a copy of exactly the bytes read, since node keeps chunks past the
 * next read. Backpressure holds: when node's buffer is full the stream stops
 * reading until node asks for more. Ending the writable side sends a
 * half-close; destroying the stream closes it.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { Duplex as NodeDuplex } from "node:stream";
import type { Duplex } from "../tunnel/join.ts";

/** Bytes asked for per read: enough for bulk bodies in few calls. */
const READ_SIZE = 64 * 1024;

/** Where a stream leads, shown to `node:http` as a socket's addresses. */
export interface StreamAddress {
  remoteAddress?: string;
  remotePort?: number;
  /** Bytes already read from the stream, read again first. */
  first?: Uint8Array;
}

/**
 * The node Duplex over `conn`. It also has the socket methods `node:http`
 * calls (`setTimeout` with a real idle timer, `setNoDelay`, `setKeepAlive`,
 * `ref`, `unref`).
 *
 * @example
 * ```ts
 * import http from "node:http";
 * import { toNodeStream } from "./node_stream.ts";
 * const server = http.createServer((_req, res) => res.end("hi"));
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 8080 });
 * server.emit("connection", toNodeStream(conn));
 * ```
 */
export function toNodeStream(conn: Duplex, address: StreamAddress = {}): TunnelNodeSocket {
  return new TunnelSocket(conn, address);
}

/** What {@linkcode toNodeStream} returns: a node Duplex with the socket calls node:http makes. */
export interface TunnelNodeSocket extends NodeDuplex {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** Emits `timeout` after `ms` without bytes either way; 0 stops it (and removes `onTimeout`). */
  setTimeout(ms: number, onTimeout?: () => void): this;
  setNoDelay(): this;
  setKeepAlive(): this;
  ref(): this;
  unref(): this;
}

class TunnelSocket extends NodeDuplex implements TunnelNodeSocket {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  #conn: Duplex;
  #buf = new Uint8Array(READ_SIZE);
  #reading = false;
  #idleMs = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(conn: Duplex, address: StreamAddress) {
    super({ allowHalfOpen: true });
    this.#conn = conn;
    this.remoteAddress = address.remoteAddress;
    this.remotePort = address.remotePort;
    if (address.first !== undefined && address.first.length > 0) {
      this.push(Buffer.from(address.first));
    }
  }

  override _read(): void {
    if (this.#reading) return;
    this.#reading = true;
    this.#pump().finally(() => this.#reading = false);
  }

  async #pump(): Promise<void> {
    try {
      while (!this.destroyed) {
        const n = await this.#conn.read(this.#buf);
        this.#touch();
        if (n === null) {
          this.push(null);
          return;
        }
        if (!this.push(Buffer.from(this.#buf.subarray(0, n)))) return;
      }
    } catch (err) {
      if (!this.destroyed) this.destroy(err as Error);
    }
  }

  override _write(chunk: Buffer, _encoding: string, done: (err?: Error | null) => void): void {
    this.#writeAll(chunk).then(() => done(), (err) => done(err as Error));
  }

  override _writev(
    chunks: { chunk: Buffer }[],
    done: (err?: Error | null) => void,
  ): void {
    const all = chunks.length === 1
      ? (chunks[0] as { chunk: Buffer }).chunk
      : Buffer.concat(chunks.map((c) => c.chunk));
    this.#writeAll(all).then(() => done(), (err) => done(err as Error));
  }

  async #writeAll(data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.length) off += await this.#conn.write(data.subarray(off));
    this.#touch();
  }

  override _final(done: (err?: Error | null) => void): void {
    this.#conn.closeWrite().then(() => done(), (err) => done(err as Error));
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    clearTimeout(this.#timer);
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    done(err);
  }

  /** Emits `timeout` after `ms` without bytes either way (0: never), as `net.Socket` does. */
  setTimeout(ms: number, onTimeout?: () => void): this {
    this.#idleMs = ms;
    if (onTimeout) {
      if (ms === 0) this.removeListener("timeout", onTimeout);
      else this.once("timeout", onTimeout);
    }
    this.#touch();
    return this;
  }

  #touch(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#idleMs > 0 && !this.destroyed) {
      this.#timer = setTimeout(() => this.emit("timeout"), this.#idleMs);
      Deno.unrefTimer(this.#timer);
    }
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }
}
