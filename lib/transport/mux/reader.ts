/**
 * The session's read loop: one large buffer per connection, refilled from
 * the socket and fed to the decoder. What the decoder leaves (a partial
 * header or small frame) stays in place; it is moved to the front only when
 * the free room runs short, so compaction is rare and small.
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
