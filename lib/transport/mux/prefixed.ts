/**
 * A byte connection whose first bytes were already read by someone else
 * (a frame reader that read past the frame it wanted): a mux session started
 * on it reads those bytes first, then the connection itself.
 *
 * @module
 */

import { isChunkReader } from "./reader.ts";
import type { ByteConn } from "./types.ts";

/** `conn`, with `first` read before anything from it. */
export class PrefixedConn implements ByteConn {
  #conn: ByteConn;
  #first: Uint8Array | null;

  constructor(conn: ByteConn, first: Uint8Array) {
    this.#conn = conn;
    this.#first = first.length > 0 ? first : null;
    if (isChunkReader(conn)) {
      this.readChunk = () => {
        const first = this.#first;
        if (first === null) return conn.readChunk();
        this.#first = null;
        return Promise.resolve(first);
      };
    }
  }

  read(p: Uint8Array): Promise<number | null> {
    const first = this.#first;
    if (first === null) return this.#conn.read(p);
    const n = Math.min(p.length, first.length);
    p.set(first.subarray(0, n));
    this.#first = n === first.length ? null : first.subarray(n);
    return Promise.resolve(n);
  }

  /**
   * The first bytes, then the connection's own chunks: only there when the
   * connection has them (see `ChunkReader`), so the session decodes either
   * way as it would on the connection itself.
   */
  readonly readChunk?: () => Promise<Uint8Array | null>;

  write(p: Uint8Array): Promise<number> {
    return this.#conn.write(p);
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}
