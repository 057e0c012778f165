/**
 * What each frame from the peer means: the session's side of the decoder.
 * It checks what the format alone cannot (stream ids of the right parity
 * and in order, frames only for streams that exist or existed, windows kept,
 * limits on streams and the accept backlog) and throws a
 * `MuxProtocolError` on a violation, which ends the session.
 *
 * Frames for a stream that has ended are dropped (and their bytes given
 * back to the session window): they were in flight when it ended. Frames
 * for ids never opened are a violation.
 *
 * @module
 */

import { MuxProtocolError, MuxVersionError } from "./errors.ts";
import type { FrameHandler } from "./decoder.ts";
import type { ReceiveWindow } from "./flow.ts";
import { FLAG_ACK, MUX_VERSION, PING, RESET, RESET_REFUSED } from "./frame.ts";
import type { MuxSettings } from "./options.ts";
import { Stream, type StreamHost } from "./stream.ts";
import type { FrameWriter } from "./writer.ts";

/** The session state and actions `Inbound` works with. */
export interface SessionCore {
  host: StreamHost;
  writer: FrameWriter;
  streams: Map<number, Stream>;
  recv: ReceiveWindow;
  role: "client" | "server";
  nextLocalId(): number;
  goAwaySent(): boolean;
  backlogLength(): number;
  preambleArrived(): void;
  accepted(stream: Stream): void;
  refused(): void;
  pong(seq: number): void;
  goneAway(lastId: number, reason: string): void;
  datagram(flowId: number, payload: Uint8Array): void;
}

const encoder = new TextEncoder();

/** Applies the peer's frames to the session. */
export class Inbound implements FrameHandler {
  /** The highest stream id the peer has opened. */
  peerHighest = 0;
  #core: SessionCore;
  #s: MuxSettings;
  #peerParity: number;
  #target: Stream | null = null;
  #targetFin = false;

  /** `core` is the session's state, `settings` its limits. */
  constructor(core: SessionCore, settings: MuxSettings) {
    this.#core = core;
    this.#s = settings;
    this.#peerParity = core.role === "client" ? 0 : 1;
  }

  onPreamble(version: number): void {
    this.#core.preambleArrived();
    if (version === MUX_VERSION) return;
    const { client, server } = this.#s.names;
    const self = this.#core.role === "client" ? client : server;
    const peer = this.#core.role === "client" ? server : client;
    throw new MuxVersionError(MUX_VERSION, version, version < MUX_VERSION ? peer : self);
  }

  onOpen(id: number, header: Uint8Array): void {
    const core = this.#core;
    if ((id & 1) !== this.#peerParity) {
      const mine = this.#peerParity === 1 ? "even" : "odd";
      throw new MuxProtocolError(
        `the peer opened stream ${id}, but ${mine} ids are this side's to open`,
      );
    }
    if (id <= this.peerHighest) {
      throw new MuxProtocolError(
        `the peer opened stream ${id} after stream ${this.peerHighest} (ids must grow)`,
      );
    }
    this.peerHighest = id;
    const s = this.#s;
    const refusal = core.goAwaySent()
      ? "the session is going away"
      : core.streams.size >= s.maxStreams
      ? `too many streams (at most ${s.maxStreams})`
      : core.backlogLength() >= s.acceptBacklog
      ? `too many streams waiting to be accepted (at most ${s.acceptBacklog})`
      : header.length > s.maxHeader
      ? `stream header of ${header.length} bytes (at most ${s.maxHeader})`
      : null;
    if (refusal !== null) {
      core.refused();
      const text = encoder.encode(refusal);
      const payload = new Uint8Array(1 + text.length);
      payload[0] = RESET_REFUSED;
      payload.set(text, 1);
      core.writer.answer(RESET, 0, id, payload.length, payload);
      return;
    }
    const stream = new Stream(core.host, id, header.slice(), s.maxStreamWindow);
    core.streams.set(id, stream);
    core.accepted(stream);
  }

  onDataStart(id: number, length: number, fin: boolean): void {
    const core = this.#core;
    if (!core.recv.receive(length)) {
      throw new MuxProtocolError(
        `the peer sent more than the session window allows (${core.recv.window} bytes)`,
      );
    }
    const stream = core.streams.get(id);
    this.#target = null;
    this.#targetFin = false;
    if (stream === undefined) {
      this.#checkEnded(id, "DATA");
      if (length > 0) core.host.consumed(length);
      return;
    }
    if (stream.finished) throw new MuxProtocolError(`DATA frame for stream ${id} after its FIN`);
    if (!stream.receive(length)) {
      throw new MuxProtocolError(`the peer sent more on stream ${id} than its window allows`);
    }
    this.#target = stream;
    this.#targetFin = fin;
  }

  onDataChunk(buf: Uint8Array, off: number, length: number): void {
    this.#target?.push(buf, off, length);
  }

  onDataEnd(): void {
    const stream = this.#target;
    this.#target = null;
    if (stream !== null && this.#targetFin && !stream.released) stream.finish();
  }

  onWindow(id: number, increment: number): void {
    const core = this.#core;
    if (id === 0) {
      if (!core.writer.addCredit(increment)) {
        throw new MuxProtocolError("the peer's session window grants add up to more than 2 GiB");
      }
      return;
    }
    const stream = core.streams.get(id);
    if (stream === undefined) return this.#checkEnded(id, "WINDOW");
    if (!stream.addCredit(increment)) {
      throw new MuxProtocolError(
        `the peer's window grants for stream ${id} add up to more than 2 GiB`,
      );
    }
  }

  onReset(id: number, refused: boolean, reason: string): void {
    const stream = this.#core.streams.get(id);
    if (stream === undefined) return this.#checkEnded(id, "RESET");
    stream.peerReset(refused, reason);
  }

  onPing(ack: boolean, opaque: number): void {
    if (ack) this.#core.pong(opaque);
    else this.#core.writer.answer(PING, FLAG_ACK, 0, opaque);
  }

  onGoAway(lastId: number, reason: string): void {
    this.#core.goneAway(lastId, reason);
  }

  onDatagram(flowId: number, payload: Uint8Array): void {
    const deliver = this.#s.onDatagram;
    if (deliver) deliver(flowId, payload);
    else this.#core.datagram(flowId, payload);
  }

  /** Throws unless stream `id` was opened once (and has ended since). */
  #checkEnded(id: number, frame: string): void {
    const ours = (id & 1) !== this.#peerParity;
    const opened = ours ? id < this.#core.nextLocalId() : id <= this.peerHighest;
    if (!opened) {
      throw new MuxProtocolError(`${frame} frame for stream ${id}, which was never opened`);
    }
  }
}
