/**
 * Raw mux frames for the decoder and hostile-peer tests: one frame as bytes,
 * and byte strings put together.
 */

import { type FrameType, HEADER_SIZE, writeHeader } from "../../lib/transport/mux/frame.ts";

/** One frame as bytes. */
export function frame(
  type: number,
  flags: number,
  id: number,
  value: number,
  payload?: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + (payload?.length ?? 0));
  writeHeader(out, 0, type as FrameType, flags, id, value);
  if (payload) out.set(payload, HEADER_SIZE);
  return out;
}

/** The parts, one after another, in one buffer. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
