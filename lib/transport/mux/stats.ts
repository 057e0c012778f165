/**
 * A session's counters, gathered from its parts for {@linkcode MuxStats}.
 *
 * @module
 */

import type { Stream } from "./stream.ts";
import type { MuxStats } from "./types.ts";
import type { WriterStats } from "./writer.ts";

/** What a session counts itself. */
export interface SessionCounts {
  opened: number;
  accepted: number;
  refused: number;
  reads: number;
  bytesIn: number;
}

/** The counters of a session with `streams` open. */
export function sessionStats(
  streams: Map<number, Stream>,
  c: SessionCounts,
  w: WriterStats,
  datagramsDroppedIn: number,
): MuxStats {
  let buffered = 0;
  for (const s of streams.values()) buffered += s.buffered;
  return {
    streams: streams.size,
    opened: c.opened,
    accepted: c.accepted,
    refused: c.refused,
    writes: w.writes,
    bytesOut: w.bytes,
    reads: c.reads,
    bytesIn: c.bytesIn,
    buffered,
    datagramsDroppedOut: w.datagramsDropped,
    datagramsDroppedIn,
  };
}
