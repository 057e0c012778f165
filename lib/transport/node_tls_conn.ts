/**
 * A `node:tls` socket as a burrow {@linkcode Conn}: `read(p)` and `write(p)`
 * promises over the socket's events, as the mux session and the handshake
 * frames read and write a `Deno.Conn`.
 *
 * Reading: each `data` chunk is queued (never copied on arrival);
 * `read(p)` moves as much of the queue into `p` as fits, so one read can
 * take several TLS records, and `readChunk()` hands over the next chunk
 * itself (the mux session decodes it in place: `ChunkReader`). The socket is paused while more than
 * {@linkcode READ_AHEAD} bytes wait, so a reader that falls behind
 * back-pressures the peer through TCP instead of buffering without bound.
 * Writing: `write(p)` hands `p` to the socket and resolves once the socket
 * has taken it (its write callback), so the caller may then reuse `p`.
 *
 * @module
 */

import type * as net from "node:net";
import type * as tls from "node:tls";
import type { Conn } from "./transport.ts";

/** Most bytes read from the socket and not yet taken by `read()` before it is paused. */
export const READ_AHEAD = 1024 * 1024;

/** Maps a Node.js socket error to the Deno error class the rest of burrow tests for. */
export function denoError(err: Error): Error {
  const code = (err as { code?: string }).code;
  switch (code) {
    case "ECONNRESET":
      return new Deno.errors.ConnectionReset(err.message);
    case "EPIPE":
      return new Deno.errors.BrokenPipe(err.message);
    case "ETIMEDOUT":
      return new Deno.errors.TimedOut(err.message);
    default:
      return err;
  }
}

/** One `node:tls` server-side socket, secured, as a {@linkcode Conn}. */
export class NodeTlsConn implements Conn {
  readonly remoteAddr: Deno.NetAddr;
  #socket: tls.TLSSocket;
  #raw: net.Socket;
  #queue: Uint8Array[] = [];
  #head = 0;
  #queued = 0;
  #paused = false;
  #ended = false;
  #error: Error | null = null;
  #closed = false;
  #reader:
    | { p: Uint8Array; resolve: (n: number | null) => void; reject: (e: Error) => void }
    | null = null;
  #chunkReader:
    | { resolve: (c: Uint8Array | null) => void; reject: (e: Error) => void }
    | null = null;

  /** `socket` wraps `raw` (the accepted TCP socket), its handshake done. */
  constructor(socket: tls.TLSSocket, raw: net.Socket, remoteAddr: Deno.NetAddr) {
    this.#socket = socket;
    this.#raw = raw;
    this.remoteAddr = remoteAddr;
    socket.on("data", (chunk: Uint8Array) => this.#onData(chunk));
    socket.on("end", () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on("error", (err: Error) => this.#onError(denoError(err)));
    socket.on(
      "close",
      () => this.#onError(new Deno.errors.BadResource("the connection is closed")),
    );
  }

  read(p: Uint8Array): Promise<number | null> {
    if (this.#queued > 0) return Promise.resolve(this.#take(p));
    if (this.#ended && !this.#closed) return Promise.resolve(null);
    if (this.#error) return Promise.reject(this.#error);
    if (this.#reader !== null || this.#chunkReader !== null) {
      return Promise.reject(new Error("a read is already pending"));
    }
    if (p.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => this.#reader = { p, resolve, reject });
  }

  /** The next chunk as the socket gave it (the caller's to keep), or null at the end. */
  readChunk(): Promise<Uint8Array | null> {
    if (this.#queued > 0) return Promise.resolve(this.#takeChunk());
    if (this.#ended && !this.#closed) return Promise.resolve(null);
    if (this.#error) return Promise.reject(this.#error);
    if (this.#reader !== null || this.#chunkReader !== null) {
      return Promise.reject(new Error("a read is already pending"));
    }
    return new Promise((resolve, reject) => this.#chunkReader = { resolve, reject });
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    if (p.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      this.#socket.write(p, (err?: Error | null) => {
        if (err) reject(denoError(err));
        else resolve(p.length);
      });
    });
  }

  closeWrite(): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve) => this.#socket.end(() => resolve()));
  }

  close(): void {
    if (this.#closed) throw new Deno.errors.BadResource("the connection is already closed");
    this.#closed = true;
    this.#onError(new Deno.errors.BadResource("the connection is closed"));
    this.#socket.destroy();
    this.#raw.destroy();
  }

  #onData(chunk: Uint8Array): void {
    if (this.#error) return;
    this.#queue.push(chunk);
    this.#queued += chunk.length;
    if (this.#reader !== null || this.#chunkReader !== null) this.#wake();
    if (this.#queued > READ_AHEAD && !this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    }
  }

  #onError(err: Error): void {
    if (this.#error) return;
    this.#error = err;
    if (this.#queued > 0) return; // the queue is read first; then the error
    const reader = this.#reader;
    const chunkReader = this.#chunkReader;
    this.#reader = this.#chunkReader = null;
    // A clean close after the end of stream reads as the end, not an error.
    if (this.#ended) {
      reader?.resolve(null);
      chunkReader?.resolve(null);
    } else {
      reader?.reject(err);
      chunkReader?.reject(err);
    }
  }

  #wake(): void {
    const reader = this.#reader;
    const chunkReader = this.#chunkReader;
    if (this.#queued > 0) {
      this.#reader = this.#chunkReader = null;
      if (reader !== null) reader.resolve(this.#take(reader.p));
      else chunkReader?.resolve(this.#takeChunk());
    } else if (this.#ended) {
      this.#reader = this.#chunkReader = null;
      reader?.resolve(null);
      chunkReader?.resolve(null);
    }
  }

  /** Takes the head chunk (or what is left of it); `#queued` > 0. */
  #takeChunk(): Uint8Array {
    const chunk = this.#queue.shift()!;
    const out = this.#head === 0 ? chunk : chunk.subarray(this.#head);
    this.#head = 0;
    this.#queued -= out.length;
    this.#resumeIfDrained();
    return out;
  }

  #resumeIfDrained(): void {
    if (this.#paused && this.#queued <= READ_AHEAD / 2) {
      this.#paused = false;
      this.#socket.resume();
    }
  }

  /** Moves queued bytes into `p`; `#queued` > 0. */
  #take(p: Uint8Array): number {
    let n = 0;
    while (n < p.length && this.#queued > 0) {
      const chunk = this.#queue[0]!;
      const left = chunk.length - this.#head;
      const k = Math.min(left, p.length - n);
      p.set(k === chunk.length ? chunk : chunk.subarray(this.#head, this.#head + k), n);
      n += k;
      this.#queued -= k;
      if (k === left) {
        this.#queue.shift();
        this.#head = 0;
      } else this.#head += k;
    }
    this.#resumeIfDrained();
    return n;
  }
}
