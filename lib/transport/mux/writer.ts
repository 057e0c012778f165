/**
 * The session's single writer: every frame leaves through it, and frames
 * that are ready at the same time leave in one `write()` call.
 *
 * Small frames (window grants, pings, opens, resets, FINs) and datagrams are
 * encoded into the output buffer the moment they are queued, so they go out
 * in the next write, ahead of any stream data not yet framed: they jump the
 * queue. Stream data is pulled only when a write is about to start, round
 * robin over the streams that have data and credit, at most `chunk` bytes per
 * stream per turn and `batch` bytes per write, so one bulk stream cannot
 * starve the others and memory stays fixed. Two output buffers alternate:
 * while one is being written the next one fills, which is what coalesces the
 * frames of many streams into one system call.
 *
 * @module
 */

import { MuxProtocolError } from "./errors.ts";
import {
  DATAGRAM,
  type FrameType,
  HEADER_SIZE,
  INITIAL_SESSION_WINDOW,
  MAX_CREDIT,
  MAX_DATA_PAYLOAD,
  writeHeader,
} from "./frame.ts";
import type { Stream } from "./stream.ts";

/** A byte connection's write side, as Deno's TcpConn has it. */
export interface ByteWriter {
  write(p: Uint8Array): Promise<number>;
}

/** What the writer calls back into its session. */
export interface WriterHooks {
  /** A write is about to be assembled: queue the grants that are due. */
  beforeFlush(): void;
  /** Everything queued has been written. */
  idle(): void;
  /** A write failed: the connection is gone. */
  failed(err: unknown): void;
}

/** Sizes for {@linkcode FrameWriter}. */
export interface WriterSizes {
  /** Most payload bytes one stream sends per turn. */
  chunk: number;
  /** Most stream payload bytes per write. */
  batch: number;
  /** Most datagram bytes waiting for one write; more are dropped. */
  datagramBytes: number;
}

/**
 * A lone ready stream with at least this much due sends it straight from the
 * caller's buffer, after its header, instead of copying it: one more (tiny)
 * system call instead of copying a large payload.
 */
const DIRECT_MIN = 64 * 1024;
/** The same for a write with headroom, which needs no extra system call. */
const FRAMED_MIN = 16 * 1024;

/** Queued frames a peer can make us write (pongs, refusals) are capped by this. */
const PEER_TRIGGERED_LIMIT = 1024 * 1024;

/** Counters the writer keeps. */
export interface WriterStats {
  /** `write()` calls on the connection. */
  writes: number;
  /** Bytes written, headers included. */
  bytes: number;
  /** Datagrams dropped because the queue was full. */
  datagramsDropped: number;
}

/** Assembles frames into large writes on one connection. */
export class FrameWriter {
  /** Counters, updated in place. */
  readonly stats: WriterStats = { writes: 0, bytes: 0, datagramsDropped: 0 };
  #conn: ByteWriter;
  #hooks: WriterHooks;
  #sizes: WriterSizes;
  #fill: Uint8Array;
  #fillLen = 0;
  #spare: Uint8Array;
  #datagramLen = 0;
  #credit = INITIAL_SESSION_WINDOW;
  #head: Stream | null = null;
  #tail: Stream | null = null;
  #wakeup: (() => void) | null = null;
  #stopped = false;
  #writingSince = 0;
  #direct: { stream: Stream; view: Uint8Array } | null = null;

  /** `first` (the preamble) goes out before anything else. */
  constructor(conn: ByteWriter, hooks: WriterHooks, sizes: WriterSizes, first: Uint8Array) {
    this.#conn = conn;
    this.#hooks = hooks;
    this.#sizes = sizes;
    const capacity = sizes.batch + (Math.ceil(sizes.batch / sizes.chunk) + 64) * HEADER_SIZE;
    this.#fill = new Uint8Array(capacity);
    this.#spare = new Uint8Array(capacity);
    this.#fill.set(first);
    this.#fillLen = first.length;
  }

  /** How long the current write has been waiting for the peer to read, in ms (0: none). */
  stalledFor(now: number): number {
    return this.#writingSince === 0 ? 0 : now - this.#writingSince;
  }

  /** Whether nothing is queued, in flight or waiting for credit. */
  get idle(): boolean {
    return this.#fillLen === 0 && this.#writingSince === 0 && this.#head === null &&
      this.#direct === null;
  }

  /** Queues a small frame; `payload` is copied. */
  control(type: FrameType, flags: number, id: number, value: number, payload?: Uint8Array): void {
    const size = HEADER_SIZE + (payload?.length ?? 0);
    this.#reserve(size);
    writeHeader(this.#fill, this.#fillLen, type, flags, id, value);
    if (payload) this.#fill.set(payload, this.#fillLen + HEADER_SIZE);
    this.#fillLen += size;
    this.wake();
  }

  /** Like `control`, for frames the peer asked for; throws when the peer does not read them. */
  answer(type: FrameType, flags: number, id: number, value: number, payload?: Uint8Array): void {
    if (this.#fillLen > PEER_TRIGGERED_LIMIT) {
      throw new MuxProtocolError("the peer asks for replies faster than it reads them");
    }
    this.control(type, flags, id, value, payload);
  }

  /** Queues a datagram; false (and counted) if the datagram queue is full. */
  datagram(flowId: number, bytes: Uint8Array): boolean {
    if (this.#datagramLen + bytes.length > this.#sizes.datagramBytes) {
      this.stats.datagramsDropped++;
      return false;
    }
    this.#datagramLen += bytes.length;
    this.control(DATAGRAM, 0, flowId, bytes.length, bytes);
    return true;
  }

  /** `stream` has data and credit: give it turns. */
  ready(stream: Stream): void {
    if (stream.queued) return;
    stream.queued = true;
    stream.nextReady = null;
    if (this.#tail === null) this.#head = stream;
    else this.#tail.nextReady = stream;
    this.#tail = stream;
    this.wake();
  }

  /** The peer granted `n` more bytes for the session; false if its grants overflow. */
  addCredit(n: number): boolean {
    this.#credit += n;
    if (this.#credit > MAX_CREDIT) return false;
    if (this.#head !== null) this.wake();
    return true;
  }

  /** Writes until stopped; a failed write is reported through `failed`, never thrown. */
  async run(): Promise<void> {
    try {
      while (!this.#stopped) {
        this.#hooks.beforeFlush();
        if (this.#head !== null && this.#credit > 0) this.#pull();
        if (this.#fillLen === 0 && this.#direct === null) {
          this.#hooks.idle();
          if (this.#stopped) break;
          await new Promise<void>((resolve) => this.#wakeup = resolve);
          continue;
        }
        const out = this.#fill;
        const len = this.#fillLen;
        const direct = this.#direct;
        this.#direct = null;
        this.#fill = this.#spare;
        this.#fillLen = 0;
        this.#datagramLen = 0;
        this.#writingSince = performance.now();
        try {
          if (len > 0) await this.#writeAll(out.subarray(0, len));
          if (direct !== null) await this.#writeAll(direct.view);
        } catch (err) {
          if (!this.#stopped) this.#hooks.failed(err);
          direct?.stream.directDone(false);
          throw err;
        }
        this.#writingSince = 0;
        this.#spare = out;
        this.stats.writes += (len > 0 ? 1 : 0) + (direct === null ? 0 : 1);
        this.stats.bytes += len + (direct?.view.length ?? 0);
        if (direct !== null) {
          direct.stream.directDone(true);
          if (direct.stream.sendable()) this.ready(direct.stream);
        }
      }
    } catch {
      this.#writingSince = 0; // reported above
    }
  }

  async #writeAll(p: Uint8Array): Promise<void> {
    let off = 0;
    while (off < p.length) off += await this.#conn.write(off === 0 ? p : p.subarray(off));
  }

  /** Stops the loop; queued frames are dropped. */
  stop(): void {
    this.#stopped = true;
    for (let s = this.#head; s !== null; s = s.nextReady) s.queued = false;
    this.#head = this.#tail = null;
    this.wake();
  }

  /**
   * Round robin: one chunk per ready stream per turn, until the batch is
   * full. A stream alone with a large write sends it without a copy.
   */
  #pull(): void {
    let budget = this.#sizes.batch;
    const chunk = this.#sizes.chunk;
    while (this.#head !== null && budget > 0 && this.#credit > 0) {
      const room = this.#fill.length - this.#fillLen - HEADER_SIZE;
      if (room <= 0) break;
      const s = this.#head;
      this.#head = s.nextReady;
      if (this.#head === null) this.#tail = null;
      s.nextReady = null;
      s.queued = false;
      if (this.#head === null && this.#credit >= DIRECT_MIN) {
        const view = s.emitDirect(
          this.#fill,
          this.#fillLen,
          Math.min(this.#credit, MAX_DATA_PAYLOAD),
          DIRECT_MIN,
          FRAMED_MIN,
        );
        if (view !== null) {
          if (!s.directFramed) this.#fillLen += HEADER_SIZE;
          this.#credit -= view.length;
          this.#direct = { stream: s, view };
          return;
        }
      }
      const max = Math.min(chunk, this.#credit, budget, room);
      const sent = s.emit(this.#fill, this.#fillLen, max);
      if (sent >= 0) {
        this.#fillLen += HEADER_SIZE + sent;
        this.#credit -= sent;
        budget -= sent;
      }
      if (s.sendable()) this.ready(s);
    }
  }

  #reserve(size: number): void {
    const needed = this.#fillLen + size;
    if (needed <= this.#fill.length) return;
    const next = new Uint8Array(Math.max(needed, this.#fill.length * 2));
    next.set(this.#fill.subarray(0, this.#fillLen));
    this.#fill = next;
  }

  /** Makes an idle loop look for work (a grant became due). */
  wake(): void {
    const wakeup = this.#wakeup;
    if (wakeup === null) return;
    this.#wakeup = null;
    wakeup();
  }
}
