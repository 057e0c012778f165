/**
 * One stream of a mux session: a reliable, ordered byte stream in each
 * direction, with half-close (FIN) and abortive reset, shaped like a TCP
 * connection so the tunnel's two-way copy takes it as it takes a socket.
 *
 * Receiving: the session's reader copies DATA payloads straight into a
 * pending `read()`'s buffer, resolved once per socket read; what arrives with
 * no read pending waits in the stream's ring (bounded by the receive window),
 * where a relay can write it on from (`peekQueued`). Sending: `write()` queues the caller's buffer
 * itself; the session's writer copies it, frame by frame, into its output
 * buffer and resolves the write once every byte has been framed.
 *
 * @module
 */

import { MuxClosedError, StreamResetError } from "./errors.ts";
import { ReceiveWindow } from "./flow.ts";
import {
  DATA,
  FLAG_FIN,
  HEADER_SIZE,
  INITIAL_STREAM_WINDOW,
  MAX_CREDIT,
  RESET,
  RESET_ABORT,
  writeHeader,
} from "./frame.ts";
import { ByteRing } from "./ring.ts";
import type { MuxStream, PendingWrite } from "./stream_api.ts";

export type { MuxStream } from "./stream_api.ts";

/** What a stream needs from its session. */
export interface StreamHost {
  /** The stream has data (with credit) or a FIN to send. */
  ready(stream: Stream): void;
  /** The stream's receive window has a grant due. */
  grantDue(stream: Stream): void;
  /** `n` bytes left the session's receive window (read, or dropped). */
  consumed(n: number): void;
  /** Resolve this stream's pending read when the current socket read is processed. */
  wakeLater(stream: Stream): void;
  /** Queues a small frame now, ahead of any data not yet framed. */
  control(type: typeof DATA | typeof RESET, flags: number, id: number, payload?: Uint8Array): void;
  /** Both directions are done (or reset): the session forgets the stream. */
  release(stream: Stream): void;
}

const encoder = new TextEncoder();
const noop = () => {};

/** The session's side of a stream (the public API is {@linkcode MuxStream}). */
export class Stream implements MuxStream {
  readonly id: number;
  readonly header: Uint8Array;
  // The session's bookkeeping: the link in the writer's round-robin list and
  // whether it is on it, whether the session has forgotten it, whether it is
  // on the list of due grants, and whether the last `emitDirect` put the
  // header in the caller's headroom.
  nextReady: Stream | null = null;
  queued = false;
  released = false;
  grantQueued = false;
  directFramed = false;

  #host: StreamHost;
  #recv: ReceiveWindow;
  #ring: ByteRing | null = null;
  #readBuf: Uint8Array | null = null;
  #readFilled = 0;
  #readResolve: ((n: number | null) => void) | null = null;
  #readReject: ((err: unknown) => void) | null = null;
  #finIn = false;
  #credit = INITIAL_STREAM_WINDOW;
  #writes: PendingWrite[] = [];
  #inFlight: PendingWrite | null = null;
  #finWanted = false;
  #finOut = false;
  #finResolve: (() => void) | null = null;
  #finReject: ((err: unknown) => void) | null = null;
  #closed = false;
  #error: Error | null = null;

  /** `maxWindow` caps the receive window's auto-tuning. */
  constructor(host: StreamHost, id: number, header: Uint8Array, maxWindow: number) {
    this.#host = host;
    this.id = id;
    this.header = header;
    this.#recv = new ReceiveWindow(INITIAL_STREAM_WINDOW, INITIAL_STREAM_WINDOW, maxWindow);
  }

  /** Bytes received and not yet read. */
  get buffered(): number {
    return this.#ring?.size ?? 0;
  }

  read(p: Uint8Array): Promise<number | null> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#readResolve) {
      return Promise.reject(new Error(`stream ${this.id} already has a read pending`));
    }
    const ring = this.#ring;
    if (ring !== null && ring.size > 0) {
      const n = ring.read(p);
      if (ring.size === 0 && this.#finIn) this.#ring = null;
      this.#consumed(n);
      return Promise.resolve(n);
    }
    if (this.#finIn) return Promise.resolve(null);
    if (p.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      this.#readBuf = p;
      this.#readFilled = 0;
      this.#readResolve = resolve;
      this.#readReject = reject;
    });
  }

  /** A view of waiting bytes, kept (and counted against the window) until skipped. */
  peekQueued(): Uint8Array | null {
    if (this.#error || this.#readResolve) return null;
    const view = this.#ring?.peek();
    return view === undefined || view.length === 0 ? null : view;
  }
  /** The first `n` bytes `peekQueued` showed have been read. */
  skipQueued(n: number): void {
    const ring = this.#ring;
    if (ring === null || this.#error || n <= 0) return;
    const k = Math.min(n, ring.size);
    ring.skip(k);
    if (ring.size === 0 && this.#finIn) this.#ring = null;
    this.#consumed(k);
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#finWanted) {
      return Promise.reject(new MuxClosedError(`stream ${this.id} was closed for writing`));
    }
    if (p.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      this.#writes.push({ buf: p, start: 0, off: 0, resolve, reject });
      if (this.#credit > 0) this.#host.ready(this);
    });
  }

  writeWithHeadroom(frame: Uint8Array): Promise<number> {
    if (frame.length < HEADER_SIZE) {
      return Promise.reject(
        new RangeError(`a write with headroom needs ${HEADER_SIZE} bytes of it`),
      );
    }
    if (this.#error) return Promise.reject(this.#error);
    if (this.#finWanted) {
      return Promise.reject(new MuxClosedError(`stream ${this.id} was closed for writing`));
    }
    if (frame.length === HEADER_SIZE) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      this.#writes.push({ buf: frame, start: HEADER_SIZE, off: HEADER_SIZE, resolve, reject });
      if (this.#credit > 0) this.#host.ready(this);
    });
  }

  closeWrite(): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#finWanted) return Promise.resolve();
    this.#finWanted = true;
    if (this.#writes.length === 0) {
      this.#sendFin();
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      this.#finResolve = resolve;
      this.#finReject = reject;
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#error) return;
    if (!this.#finIn) {
      this.#abort(new MuxClosedError(`stream ${this.id} is closed`), "closed");
      return;
    }
    const dropped = this.#ring?.clear() ?? 0;
    this.#ring = null;
    if (dropped > 0) this.#host.consumed(dropped);
    if (!this.#finWanted) this.closeWrite().catch(noop);
  }

  reset(reason = ""): void {
    if (this.#error) return;
    this.#abort(new StreamResetError(this.id, false, false, reason), reason);
  }

  /** Writes one DATA frame of at most `max` payload bytes at `out[at]`; -1 if none is due. */
  emit(out: Uint8Array, at: number, max: number): number {
    const w = this.#writes[0];
    if (w === undefined || this.#error || this.#inFlight) return -1;
    const left = w.buf.length - w.off;
    const n = Math.min(max, this.#credit, left);
    if (n <= 0) return -1;
    const fin = n === left && this.#finWanted && this.#writes.length === 1;
    writeHeader(out, at, DATA, fin ? FLAG_FIN : 0, this.id, n);
    out.set(n === w.buf.length ? w.buf : w.buf.subarray(w.off, w.off + n), at + HEADER_SIZE);
    w.off += n;
    this.#credit -= n;
    if (w.off === w.buf.length) {
      this.#writes.shift();
      w.resolve(w.buf.length - w.start);
    }
    if (fin) {
      this.#finOut = true;
      const resolve = this.#finResolve;
      this.#finResolve = this.#finReject = null;
      resolve?.();
      if (this.#finIn) this.#host.release(this);
    }
    return n;
  }

  /**
   * Frames the next `min` to `max` bytes of the head write uncopied: the DATA
   * header at `out[at]`, and a view of the caller's bytes to send after it
   * (null if fewer than `min` are due). The write resolves in `directDone`.
   */
  emitDirect(
    out: Uint8Array,
    at: number,
    max: number,
    min: number,
    minFramed: number,
  ): Uint8Array | null {
    const w = this.#writes[0];
    if (w === undefined || this.#error || this.#inFlight) return null;
    const left = w.buf.length - w.off;
    const n = Math.min(max, this.#credit, left);
    const framed = w.start === HEADER_SIZE && w.off === HEADER_SIZE && n === left;
    if (n < (framed ? minFramed : min)) return null;
    const fin = n === left && this.#finWanted && this.#writes.length === 1;
    let view: Uint8Array;
    if (framed) {
      writeHeader(w.buf, 0, DATA, fin ? FLAG_FIN : 0, this.id, n);
      view = w.buf;
    } else {
      writeHeader(out, at, DATA, fin ? FLAG_FIN : 0, this.id, n);
      view = w.buf.subarray(w.off, w.off + n);
    }
    this.directFramed = framed;
    w.off += n;
    this.#credit -= n;
    this.#inFlight = w;
    if (fin) {
      this.#finOut = true;
      if (this.#finIn) this.#host.release(this);
    }
    return view;
  }

  /** The bytes `emitDirect` returned have been written (or, if not `ok`, never will be). */
  directDone(ok: boolean): void {
    const w = this.#inFlight;
    this.#inFlight = null;
    if (w === null) return;
    if (this.#error || !ok) {
      w.reject(this.#error ?? new Error(`stream ${this.id}: the connection failed`));
      return;
    }
    if (w.off < w.buf.length) return;
    this.#writes.shift();
    w.resolve(w.buf.length - w.start);
    if (this.#writes.length === 0 && this.#finWanted) {
      if (!this.#finOut) this.#sendFin();
      const resolve = this.#finResolve;
      this.#finResolve = this.#finReject = null;
      resolve?.();
    }
  }

  /** Whether it has bytes it may send now. */
  sendable(): boolean {
    return this.#error === null && this.#inFlight === null && this.#writes.length > 0 &&
      this.#credit > 0;
  }
  /** The peer granted `n` more bytes; false if its grants overflow. */
  addCredit(n: number): boolean {
    this.#credit += n;
    if (this.#credit > MAX_CREDIT) return false;
    if (this.#writes.length > 0 && !this.queued) this.#host.ready(this);
    return true;
  }
  /** Counts `n` arriving DATA bytes against the window; false if they exceed it. */
  receive(n: number): boolean {
    return this.#recv.receive(n);
  }
  /** Whether the peer's FIN has arrived. */
  get finished(): boolean {
    return this.#finIn;
  }

  /** DATA payload bytes `buf[off..off+n]` arrived (a view valid during the call). */
  push(buf: Uint8Array, off: number, n: number): void {
    if (this.#error || this.#closed) {
      this.#host.consumed(n); // nobody will read them
      return;
    }
    const dst = this.#readBuf;
    if (dst !== null) {
      const room = dst.length - this.#readFilled;
      const take = n < room ? n : room;
      if (take > 0) {
        dst.set(buf.subarray(off, off + take), this.#readFilled);
        if (this.#readFilled === 0) this.#host.wakeLater(this);
        this.#readFilled += take;
        off += take;
        n -= take;
      }
    }
    if (n > 0) (this.#ring ??= new ByteRing()).write(buf.subarray(off, off + n));
  }
  /** The peer's FIN arrived. */
  finish(): void {
    this.#finIn = true;
    if (this.#readResolve !== null && this.#readFilled === 0) this.#host.wakeLater(this);
    if (this.#finOut) this.#host.release(this);
  }

  /** Resolves the pending read with what the current socket read put in it. */
  wake(): void {
    const resolve = this.#readResolve;
    if (resolve === null) return;
    const n = this.#readFilled;
    if (n === 0 && !this.#finIn) return;
    this.#readBuf = null;
    this.#readResolve = this.#readReject = null;
    this.#readFilled = 0;
    if (n > 0) this.#consumed(n);
    resolve(n > 0 ? n : null);
  }

  /** The credit to grant the peer now (0 if none is due). */
  grant(now: number, rttMs: number): number {
    if (this.#finIn || this.#error) return 0;
    return this.#recv.grant(now, rttMs);
  }
  /** The peer reset the stream. */
  peerReset(refused: boolean, reason: string): void {
    this.#fail(new StreamResetError(this.id, true, refused, reason));
    this.#host.release(this);
  }

  /** The session ended: every pending and later call rejects with `err`. */
  fail(err: Error): void {
    this.#fail(err);
  }

  #abort(err: Error, reason: string): void {
    if (!(this.#finIn && this.#finOut)) {
      const text = encoder.encode(reason.slice(0, 256));
      const payload = new Uint8Array(1 + text.length);
      payload[0] = RESET_ABORT;
      payload.set(text, 1);
      this.#host.control(RESET, 0, this.id, payload);
    }
    this.#fail(err);
    this.#host.release(this);
  }

  #fail(err: Error): void {
    if (this.#error) return;
    this.#error = err;
    const dropped = this.#ring?.clear() ?? 0;
    this.#ring = null;
    if (dropped > 0) this.#host.consumed(dropped);
    const readReject = this.#readReject;
    this.#readBuf = null;
    this.#readResolve = this.#readReject = null;
    readReject?.(err);
    const writes = this.#writes;
    this.#writes = [];
    // One whose bytes are leaving now is rejected once they have (`directDone`).
    for (const w of writes) if (w !== this.#inFlight) w.reject(err);
    const finReject = this.#finReject;
    this.#finResolve = this.#finReject = null;
    finReject?.(err);
  }

  #sendFin(): void {
    this.#finOut = true;
    this.#host.control(DATA, FLAG_FIN, this.id);
    if (this.#finIn) this.#host.release(this);
  }

  #consumed(n: number): void {
    this.#host.consumed(n);
    if (this.#recv.consume(n) && !this.#finIn) this.#host.grantDue(this);
  }
}
