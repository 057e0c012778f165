/**
 * The two-way copy between a user's connection and a work connection (on the
 * server) or between a work connection and the local app (on the client).
 * This is the hot path.
 *
 * Each direction reads into one buffer it owns for the whole connection; no
 * chunk is allocated per read. A direction starts on a tiny buffer so that
 * thousands of idle connections stay cheap, trades it for a small one the
 * first time a read fills it, and that for a large pooled one the next time,
 * so bulk transfers make few system calls (at most three buffers per
 * direction, however long the connection). End of stream on one side is passed on as a half-close of the
 * other; the join ends when both directions have finished, and at once, with
 * both sides closed, when either fails.
 *
 * @module
 */

import { type ByteReader, writeAll } from "../protocol/frames.ts";
import type { Duplex } from "../transport/transport.ts";
import { closeQuietly } from "../transport/net.ts";
import { MUX_HEADROOM } from "../transport/mux/mod.ts";

/** A destination that frames a payload in place (a mux stream): see `MuxStream.writeWithHeadroom`. */
interface HeadroomWriter {
  writeWithHeadroom(frame: Uint8Array): Promise<number>;
}

function hasHeadroom(d: Duplex): d is Duplex & HeadroomWriter {
  return typeof (d as Partial<HeadroomWriter>).writeWithHeadroom === "function";
}

/** A source whose waiting bytes can be written on in place (a mux stream): see `MuxStream.peekQueued`. */
interface QueuePeeker {
  peekQueued(): Uint8Array | null;
  skipQueued(n: number): void;
}

function peeks(s: ByteReader): s is ByteReader & QueuePeeker {
  return typeof (s as Partial<QueuePeeker>).peekQueued === "function";
}

export type { Duplex };

/** Bytes moved so far, updated in place as the copy runs. */
export interface JoinStats {
  aToB: number;
  bToA: number;
}

/** What one join did. `error` is set when a side failed rather than ended. */
export interface JoinResult extends JoinStats {
  error?: unknown;
}

/** Options for {@linkcode join}. */
export interface JoinOptions {
  /** Bytes already read from `a` (e.g. past a frame) to send to `b` first. */
  aToBFirst?: Uint8Array;
  /**
   * Resolves to bytes already read from `b` to send to `a` first. The b-to-a
   * direction waits for it; if it rejects, the join fails and both close.
   */
  bToAFirst?: Uint8Array | Promise<Uint8Array>;
  /**
   * A few bytes that lead the b-to-a direction without a write of their own
   * when `a` is a mux stream: they go in the frame of b's first bytes, or
   * before b's end of stream, or alone once b has been silent `withinMs`.
   * They are not counted in the stats.
   */
  bToALead?: Lead;
  /** Counters to update in place (for live statistics). */
  stats?: JoinStats;
  /** Where large buffers come from and return to. */
  pool?: BufferPool;
}

/** See {@linkcode JoinOptions.bToALead}. */
export interface Lead {
  bytes: Uint8Array;
  withinMs: number;
}

/** Initial per-direction buffer: what an idle connection holds (a request, a keystroke). */
export const TINY_BUFFER = 2 * 1024;
/** Taken once a read fills the tiny one: enough for interactive traffic. */
export const SMALL_BUFFER = 16 * 1024;
/** Buffer taken once a read fills the small one: few syscalls for bulk data. */
export const LARGE_BUFFER = 256 * 1024;

/**
 * A free list of large buffers, owned by one server or client, so that
 * short bulk connections reuse memory instead of churning the collector.
 */
export class BufferPool {
  #free: Uint8Array[] = [];
  #max: number;
  constructor(maxFree = 64) {
    this.#max = maxFree;
  }
  take(): Uint8Array {
    return this.#free.pop() ?? new Uint8Array(LARGE_BUFFER);
  }
  give(buf: Uint8Array): void {
    if (buf.length === LARGE_BUFFER && this.#free.length < this.#max) this.#free.push(buf);
  }
}

/**
 * Copies both ways between `a` and `b` until both directions end or one
 * fails, then closes both. Never rejects: failures are reported in the result.
 */
export async function join(a: Duplex, b: Duplex, options: JoinOptions = {}): Promise<JoinResult> {
  const stats = options.stats ?? { aToB: 0, bToA: 0 };
  const pool = options.pool ?? new BufferPool(0);
  let failure: { error: unknown } | undefined;
  let closed = false;
  const closeBoth = () => {
    if (closed) return;
    closed = true;
    closeQuietly(a);
    closeQuietly(b);
  };
  const fail = (error: unknown) => {
    failure ??= { error };
    closeBoth();
  };
  const aToB = copy(a, b, pool, (n) => stats.aToB += n, options.aToBFirst).catch(fail);
  const bToA = (async () => {
    const first = await options.bToAFirst;
    await copy(b, a, pool, (n) => stats.bToA += n, first, options.bToALead);
  })().catch(fail);
  await Promise.all([aToB, bToA]);
  closeBoth();
  const result: JoinResult = { aToB: stats.aToB, bToA: stats.bToA };
  if (failure) result.error = failure.error;
  return result;
}

/** One direction: read from src, write to dst, half-close dst at EOF. */
async function copy(
  src: ByteReader,
  dst: Duplex,
  pool: BufferPool,
  count: (n: number) => void,
  first: Uint8Array | undefined,
  lead?: Lead,
): Promise<void> {
  // Into a mux stream, each read lands after room for the frame header, so
  // the stream writes header and payload in one system call, uncopied.
  const room = hasHeadroom(dst) ? MUX_HEADROOM : 0;
  // Out of a mux stream, bytes that arrived while the last write was under
  // way are written from the stream's own buffer, not copied into ours.
  const queue = peeks(src) ? src : null;
  if (first?.length === 0) first = undefined;
  // A lead rides in the frame of src's first read only into a frame-in-place
  // destination, and only when nothing goes before that read; else it goes now.
  if (lead !== undefined && (room === 0 || queue !== null || first !== undefined)) {
    await writeAll(dst, lead.bytes);
    lead = undefined;
  }
  if (first !== undefined) {
    await writeAll(dst, first);
    count(first.length);
  }
  let buf: Uint8Array = new Uint8Array(TINY_BUFFER);
  let large = false;
  let ended = false;
  try {
    if (lead !== undefined) {
      ended = !(await firstWithLead(src, dst as Duplex & HeadroomWriter, buf, lead, count));
    }
    while (!ended) {
      const queued = queue?.peekQueued() ?? null;
      if (queued !== null) {
        await writeAll(dst, queued);
        queue!.skipQueued(queued.length);
        count(queued.length);
        continue;
      }
      const n = await src.read(room === 0 ? buf : buf.subarray(room));
      if (n === null) break;
      if (room === 0) await writeAll(dst, n === buf.length ? buf : buf.subarray(0, n));
      else await (dst as Duplex & HeadroomWriter).writeWithHeadroom(buf.subarray(0, room + n));
      count(n);
      if (!large && n === buf.length - room) {
        if (buf.length < SMALL_BUFFER) buf = new Uint8Array(SMALL_BUFFER);
        else {
          buf = pool.take();
          large = true;
        }
      }
    }
  } finally {
    if (large) pool.give(buf);
  }
  await dst.closeWrite();
}

/**
 * The first read of a direction with a lead (into a mux stream): the lead
 * goes in front of the bytes read, in the same frame, or alone if `src`
 * stays silent `lead.withinMs`, or before its end of stream. Resolves to
 * false at that end of stream.
 */
async function firstWithLead(
  src: ByteReader,
  dst: Duplex & HeadroomWriter,
  buf: Uint8Array,
  lead: Lead,
  count: (n: number) => void,
): Promise<boolean> {
  const k = lead.bytes.length;
  const alone: { sent: Promise<unknown> | null } = { sent: null };
  const timer = setTimeout(() => {
    alone.sent = writeAll(dst, lead.bytes);
    alone.sent.catch(() => {}); // awaited below, unless the read failed first
  }, lead.withinMs);
  let n: number | null;
  try {
    n = await src.read(buf.subarray(MUX_HEADROOM + k));
  } finally {
    clearTimeout(timer);
  }
  if (alone.sent !== null) {
    await alone.sent;
    if (n === null) return false;
    // The headroom goes just before the bytes read, where the lead would have been.
    await dst.writeWithHeadroom(buf.subarray(k, MUX_HEADROOM + k + n));
  } else if (n === null) {
    await writeAll(dst, lead.bytes);
    return false;
  } else {
    buf.set(lead.bytes, MUX_HEADROOM);
    await dst.writeWithHeadroom(buf.subarray(0, MUX_HEADROOM + k + n));
  }
  count(n);
  return true;
}
