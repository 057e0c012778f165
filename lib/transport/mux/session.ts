/**
 * A mux session: many streams and datagrams over one byte connection (a TCP
 * or TLS socket). Either side opens streams with {@linkcode MuxSession.openStream},
 * at once and without a round trip (the data may follow the OPEN frame
 * immediately); the other side takes them with {@linkcode MuxSession.accept}.
 *
 * The session owns two loops: a reader that decodes frames from one large
 * buffer and hands them to {@linkcode Inbound}, and the {@linkcode FrameWriter}.
 * It ends exactly once, with the reason in {@linkcode MuxSession.closed}:
 * closed here, drained after a GoAway, or failed (connection lost, peer
 * silent, protocol broken); then every stream fails with that error, and
 * nothing else is left running.
 *
 * @module
 */

import {
  asSessionError,
  endError,
  MuxClosedError,
  MuxConnectionError,
  MuxProtocolError,
} from "./errors.ts";
import { sessionStats } from "./stats.ts";
import { checkDatagram, DatagramQueue } from "./datagrams.ts";
import { Pinger } from "./pinger.ts";
import { ReceiveWindow } from "./flow.ts";
import { GOAWAY, INITIAL_SESSION_WINDOW, MAX_STREAM_ID, OPEN, PING, preamble } from "./frame.ts";
import { AcceptQueue } from "./accept_queue.ts";
import { GrantQueue } from "./grants.ts";
import { FrameDecoder } from "./decoder.ts";
import { Inbound, type SessionCore } from "./inbound.ts";
import { type MuxSessionOptions, type MuxSettings, muxSettings } from "./options.ts";
import { readFrames } from "./reader.ts";
import type { ByteConn, Datagram, MuxCloseReason, MuxStats } from "./types.ts";
import { type MuxStream, Stream, type StreamHost } from "./stream.ts";
import { FrameWriter } from "./writer.ts";

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const noop = () => {};

/** One multiplexed connection. */
export class MuxSession {
  /** Which end this is. */
  readonly role: "client" | "server";
  /** Resolves, never rejects, once the session has ended. */
  readonly closed: Promise<MuxCloseReason>;

  #s: MuxSettings;
  #conn: ByteConn;
  #writer: FrameWriter;
  #core: SessionCore;
  #inbound: Inbound;
  #decoder: FrameDecoder;
  #recv: ReceiveWindow;
  #streams = new Map<number, Stream>();
  #nextId: number;
  #accepts = new AcceptQueue();
  #grants: GrantQueue;
  #wakeList: Stream[] = [];
  #goAwaySent = false;
  #goAwayReceived = false;
  #reason: MuxCloseReason | null = null;
  #resolveClosed: (reason: MuxCloseReason) => void = noop;
  #pinger = new Pinger();
  #heard = false;
  #lastHeard = performance.now();
  #timer: ReturnType<typeof setInterval>;
  #handshakeTimer: ReturnType<typeof setTimeout>;
  #datagrams: DatagramQueue;
  #counts = { opened: 0, accepted: 0, refused: 0, reads: 0, bytesIn: 0 };

  /**
   * Starts a session on `conn` (which it then owns and closes): sends the
   * preamble, and reads and writes until it ends.
   *
   * @example
   * ```ts
   * import { MuxSession } from "./session.ts";
   * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const dialled = Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
   * const server = new MuxSession(await listener.accept(), { role: "server" });
   * const client = new MuxSession(await dialled, { role: "client" });
   * const stream = client.openStream(new TextEncoder().encode("echo"));
   * await stream.write(new TextEncoder().encode("hello"));
   * const incoming = await server.accept();
   * console.log(new TextDecoder().decode(incoming?.header)); // echo
   * client.close();
   * server.close();
   * listener.close();
   * ```
   */
  constructor(conn: ByteConn, options: MuxSessionOptions) {
    const s = this.#s = muxSettings(options);
    this.role = s.role;
    this.#conn = conn;
    this.#nextId = s.role === "client" ? 1 : 2;
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    this.#recv = new ReceiveWindow(INITIAL_SESSION_WINDOW, s.sessionWindow, s.sessionWindow);
    this.#datagrams = new DatagramQueue(s.datagramQueue);
    this.#writer = new FrameWriter(
      conn,
      {
        beforeFlush: () => this.#grants.flush(),
        idle: () => this.#maybeDrain(),
        failed: (err) => this.#fail(err),
      },
      { chunk: s.chunk, batch: s.writeBatch, datagramBytes: s.datagramBytes },
      preamble(),
    );
    this.#grants = new GrantQueue(this.#recv, this.#writer, () => this.#pinger.srtt);
    this.#core = this.#makeCore();
    this.#inbound = new Inbound(this.#core, s);
    this.#decoder = new FrameDecoder(this.#inbound);
    this.#handshakeTimer = setTimeout(() => {
      this.#fail(new MuxProtocolError(`no mux preamble from the peer within ${s.handshakeMs} ms`));
    }, s.handshakeMs);
    const tick = Math.max(1, Math.min(s.keepaliveMs || s.timeoutMs, s.timeoutMs) / 2);
    this.#timer = setInterval(() => this.#tick(), tick);
    this.#writer.run();
    this.#readLoop().catch((err) => this.#fail(err));
    this.ping().catch(noop); // a first round-trip sample for the windows' auto-tuning
  }

  /** Streams open now (both directions, including those waiting for `accept()`). */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** Whether `openStream` may be called: not ended, no GoAway either way, ids left. */
  get canOpen(): boolean {
    return this.#reason === null && !this.#goAwaySent && !this.#goAwayReceived &&
      this.#nextId <= MAX_STREAM_ID;
  }

  /** The smoothed round-trip time in ms, once a ping has measured it. */
  get rtt(): number | undefined {
    return this.#pinger.srtt;
  }

  /** Current counters. */
  get stats(): MuxStats {
    return sessionStats(this.#streams, this.#counts, this.#writer.stats, this.#datagrams.dropped);
  }

  /**
   * Opens a stream carrying `header` (the peer's `accept()` returns it).
   * Returns at once: the OPEN frame is queued and the stream may be written
   * to immediately. If the peer refuses it, its calls reject with a
   * `StreamResetError` whose `refused` is set. Throws `MuxClosedError` once
   * the session has ended or is going away, `RangeError` at `maxStreams`.
   */
  openStream(header: Uint8Array = EMPTY): MuxStream {
    if (!this.canOpen) {
      throw new MuxClosedError(
        this.#reason !== null
          ? "the mux session has ended"
          : this.#nextId > MAX_STREAM_ID
          ? "the mux session has used all its stream ids: open a new session"
          : "the mux session is going away",
      );
    }
    if (header.length > this.#s.maxHeader) {
      throw new RangeError(
        `stream header of ${header.length} bytes (at most ${this.#s.maxHeader})`,
      );
    }
    if (this.#streams.size >= this.#s.maxStreams) {
      throw new RangeError(`the mux session has ${this.#s.maxStreams} streams open, its maximum`);
    }
    const id = this.#nextId;
    this.#nextId += 2;
    const stream = new Stream(this.#core.host, id, header, this.#s.maxStreamWindow);
    this.#streams.set(id, stream);
    this.#counts.opened++;
    this.#writer.control(OPEN, 0, id, header.length, header);
    return stream;
  }

  /** The next stream the peer opened, or null once no more will come (ended, or GoAway). */
  accept(): Promise<MuxStream | null> {
    return this.#accepts.next(this.#reason !== null || this.#goAwaySent || this.#goAwayReceived);
  }

  /** The peer's streams as they arrive, until `accept()` returns null. */
  async *incoming(): AsyncGenerator<MuxStream, void, undefined> {
    while (true) {
      const stream = await this.accept();
      if (stream === null) return;
      yield stream;
    }
  }

  /**
   * Queues a datagram for flow `flowId` ahead of stream data. Returns false,
   * and counts a drop, if the queue is full or the session has ended: a
   * datagram is never waited for. `payload` is copied.
   */
  sendDatagram(flowId: number, payload: Uint8Array): boolean {
    checkDatagram(flowId, payload);
    if (this.#reason !== null) return false;
    return this.#writer.datagram(flowId, payload);
  }

  /** The next received datagram (unless `onDatagram` takes them), or null once ended. */
  receiveDatagram(): Promise<Datagram | null> {
    return this.#datagrams.receive();
  }

  /** Received datagrams as they arrive, until the session ends. */
  async *datagrams(): AsyncGenerator<Datagram, void, undefined> {
    while (true) {
      const d = await this.receiveDatagram();
      if (d === null) return;
      yield d;
    }
  }

  /** Measures the round trip: resolves with it in ms, rejects if the session ends first. */
  ping(): Promise<number> {
    if (this.#reason !== null) return Promise.reject(this.#endError());
    return this.#pinger.start((seq) => this.#writer.control(PING, 0, 0, seq));
  }

  /**
   * Graceful end: tells the peer that no new streams are accepted (from
   * either side); open streams carry on, and once the last one finishes
   * the connection closes. Resolves with `closed`.
   */
  goAway(reason = ""): Promise<MuxCloseReason> {
    if (this.#reason === null && !this.#goAwaySent) {
      this.#goAwaySent = true;
      const text = encoder.encode(reason.slice(0, 256));
      this.#writer.control(GOAWAY, 0, this.#inbound.peerHighest, text.length, text);
      this.#accepts.end();
      this.#maybeDrain();
    }
    return this.closed;
  }

  /** Abortive end: closes the connection; every stream fails with `MuxClosedError`. */
  close(): void {
    this.#end({ kind: "closed" });
  }

  /** Closes, then waits for the end. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.closed;
  }

  async #readLoop(): Promise<void> {
    const ended = await readFrames(this.#conn, this.#decoder, this.#s.readBuffer, (n) => {
      if (this.#reason !== null) return false;
      this.#heard = true;
      this.#counts.reads++;
      this.#counts.bytesIn += n;
      return true;
    }, () => this.#wakeReaders());
    if (ended && this.#reason === null) this.#connectionEnded();
  }

  #connectionEnded(): void {
    const unfinished = this.#decoder.unfinished();
    if (unfinished !== null) {
      this.#fail(new MuxConnectionError(`the connection closed ${unfinished}`));
    } else if ((this.#goAwaySent || this.#goAwayReceived) && this.#streams.size === 0) {
      this.#end({ kind: "drained" });
    } else {
      const open = this.#streams.size;
      this.#fail(
        new MuxConnectionError(
          `the peer closed the connection${open > 0 ? ` with ${open} streams open` : ""}`,
        ),
      );
    }
  }

  #wakeReaders(): void {
    const list = this.#wakeList;
    for (let i = 0; i < list.length; i++) list[i]!.wake();
    list.length = 0;
  }

  #tick(): void {
    const now = performance.now();
    const s = this.#s;
    if (this.#heard) {
      this.#heard = false;
      this.#lastHeard = now;
    }
    const silent = now - this.#lastHeard;
    if (s.keepaliveMs > 0 && silent >= s.timeoutMs) {
      this.#fail(new MuxConnectionError(`no frames from the peer for ${Math.round(silent)} ms`));
    } else if (this.#writer.stalledFor(now) >= s.timeoutMs) {
      this.#fail(new MuxConnectionError(`the peer has not read for ${s.timeoutMs} ms`));
    } else if (s.keepaliveMs > 0 && silent >= s.keepaliveMs && this.#pinger.inFlight === 0) {
      this.ping().catch(noop);
    }
  }

  #maybeDrain(): void {
    if (this.#reason !== null || !(this.#goAwaySent || this.#goAwayReceived)) return;
    if (this.#streams.size === 0 && this.#writer.idle) this.#end({ kind: "drained" });
  }

  #fail(err: unknown): void {
    if (this.#reason !== null) return;
    if (
      (this.#goAwaySent || this.#goAwayReceived) && this.#streams.size === 0 &&
      !(err instanceof MuxProtocolError)
    ) {
      this.#end({ kind: "drained" }); // the peer closed first, while both were draining
      return;
    }
    const error = asSessionError(err);
    this.#end({ kind: "failed", error });
  }

  #endError(): Error {
    return endError(this.#reason);
  }

  #end(reason: MuxCloseReason): void {
    if (this.#reason !== null) return;
    this.#reason = reason;
    clearTimeout(this.#handshakeTimer);
    clearInterval(this.#timer);
    this.#writer.stop();
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    const err = this.#endError();
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    this.#accepts.clear();
    for (const s of streams) {
      s.released = true;
      s.fail(err);
    }
    this.#accepts.end();
    this.#datagrams.close();
    this.#pinger.failAll(err);
    this.#resolveClosed(reason);
  }

  /** The internals `Inbound` and the streams work with. */
  #makeCore(): SessionCore {
    const host: StreamHost = {
      ready: (s) => this.#writer.ready(s),
      grantDue: (s) => this.#grants.streamDue(s),
      consumed: (n) => this.#grants.consumed(n),
      wakeLater: (s) => this.#wakeList.push(s),
      control: (type, flags, id, payload) =>
        this.#writer.control(type, flags, id, payload?.length ?? 0, payload),
      release: (s) => {
        if (s.released) return;
        s.released = true;
        this.#streams.delete(s.id);
        this.#maybeDrain();
      },
    };
    return {
      host,
      writer: this.#writer,
      streams: this.#streams,
      recv: this.#recv,
      role: this.role,
      nextLocalId: () => this.#nextId,
      goAwaySent: () => this.#goAwaySent,
      backlogLength: () => this.#accepts.length,
      preambleArrived: () => clearTimeout(this.#handshakeTimer),
      accepted: (stream) => {
        this.#counts.accepted++;
        this.#accepts.push(stream);
      },
      refused: () => this.#counts.refused++,
      pong: (seq) => this.#pinger.answered(seq),
      goneAway: (lastId, reason) => {
        this.#goAwayReceived = true;
        const why = `the peer is going away${reason ? `: ${reason}` : ""}`;
        for (const s of [...this.#streams.values()]) {
          if ((s.id & 1) === (this.#nextId & 1) && s.id > lastId) {
            s.peerReset(true, why);
          }
        }
        this.#accepts.end();
        this.#maybeDrain();
      },
      datagram: (flowId, payload) => this.#datagrams.push(flowId, payload),
    };
  }
}
