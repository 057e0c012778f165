/**
 * The session's read loop: one large buffer per connection, refilled from
 * the socket and fed to the decoder. What the decoder leaves (a partial
 * header or small frame) stays in place; it is moved to the front only when
 * the free room runs short, so compaction is rare and small.
 *
 * A connection that hands out chunks it has already allocated (a
 * {@linkcode ChunkReader}, such as a `node:tls` socket) is decoded straight
 * from its chunks instead: copying them into the buffer first would only
 * cost a copy. The buffer then holds only what a chunk left unfinished.
 *
 * @module
 */

import type { FrameDecoder } from "./decoder.ts";
import { FRAME_ROOM } from "./options.ts";

/** A byte connection's read side. */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

/**
 * A connection that can give its next bytes as a chunk of its own, with no
 * copy: the chunk is the caller's to read until its next call, and null
 * means the end of the stream (as `read` would).
 */
export interface ChunkReader {
  readChunk(): Promise<Uint8Array | null>;
}

/** Whether `conn` offers {@linkcode ChunkReader.readChunk}. */
export function isChunkReader(conn: object): conn is ChunkReader {
  return typeof (conn as Partial<ChunkReader>).readChunk === "function";
}

/**
 * Reads and decodes until the connection ends (resolves true) or `afterRead`
 * says to stop (resolves false). `afterRead(n)` runs after every socket read,
 * before decoding; `afterFeed` after the decoder has taken the read's frames,
 * even if it threw (the throw then rejects this).
 */
export async function readFrames(
  conn: ByteReader,
  decoder: FrameDecoder,
  size: number,
  afterRead: (n: number) => boolean,
  afterFeed: () => void,
): Promise<boolean> {
  if (isChunkReader(conn)) return readChunks(conn, decoder, size, afterRead, afterFeed);
  const buf = new Uint8Array(size);
  let start = 0;
  let end = 0;
  while (true) {
    if (start === end) start = end = 0;
    else if (buf.length - end < FRAME_ROOM) {
      buf.copyWithin(0, start, end);
      end -= start;
      start = 0;
    }
    const n = await conn.read(end === 0 ? buf : buf.subarray(end));
    if (n === null) return true;
    if (!afterRead(n)) return false;
    end += n;
    try {
      start = decoder.feed(buf, start, end);
    } finally {
      afterFeed();
    }
  }
}

/**
 * `readFrames` over a {@linkcode ChunkReader}: each chunk is decoded where it
 * lies. What the decoder leaves unfinished (shorter than `FRAME_ROOM`) is
 * kept in `buf`, and the next chunk is appended to it until the decoder has
 * moved past the leftover; the rest of that chunk is again decoded in place.
 */
async function readChunks(
  conn: ChunkReader,
  decoder: FrameDecoder,
  size: number,
  afterRead: (n: number) => boolean,
  afterFeed: () => void,
): Promise<boolean> {
  const buf = new Uint8Array(size);
  let left = 0;
  while (true) {
    const chunk = await conn.readChunk();
    if (chunk === null) return true;
    if (!afterRead(chunk.length)) return false;
    try {
      let off = 0;
      while (left > 0 && off < chunk.length) {
        const k = Math.min(chunk.length - off, buf.length - left);
        buf.set(off === 0 && k === chunk.length ? chunk : chunk.subarray(off, off + k), left);
        left += k;
        off += k;
        const at = decoder.feed(buf, 0, left);
        if (at > 0) buf.copyWithin(0, at, left);
        left -= at;
      }
      if (off < chunk.length) {
        const at = decoder.feed(chunk, off, chunk.length);
        if (at < chunk.length) buf.set(chunk.subarray(at), 0);
        left = chunk.length - at;
      }
    } finally {
      afterFeed();
    }
  }
}
