/**
 * The incremental frame decoder. It is fed whatever a socket read returned,
 * checks every header against the format (known type, allowed flags, payload
 * within its type's cap, id 0 only where the session is meant) and hands each
 * frame to a {@linkcode FrameHandler}. DATA payloads are passed on in pieces
 * as they arrive, as views into the caller's buffer, so a frame never has to
 * fit in it and no chunk is copied or allocated here; other payloads are
 * small and passed whole. Meaning (which streams exist, windows) is the
 * handler's business.
 *
 * @module
 */

import { MuxProtocolError } from "./errors.ts";
import {
  ALLOWED_FLAGS,
  DATA,
  DATAGRAM,
  FLAG_ACK,
  FLAG_FIN,
  FRAME_NAMES,
  FRAME_TYPES,
  GOAWAY,
  HEADER_SIZE,
  MAGIC,
  MAX_PAYLOAD,
  OPEN,
  PING,
  PREAMBLE_SIZE,
  readU32,
  RESET,
  RESET_REFUSED,
  WINDOW,
} from "./frame.ts";

/** What the decoder calls for each frame; any method may throw to end the session. */
export interface FrameHandler {
  /** The peer's preamble arrived with this version byte. */
  onPreamble(version: number): void;
  /** A DATA frame for stream `id` starts; `length` payload bytes follow. */
  onDataStart(id: number, length: number, fin: boolean): void;
  /** The next `length` payload bytes of the current DATA frame, at `buf[off]`. */
  onDataChunk(buf: Uint8Array, off: number, length: number): void;
  /** The current DATA frame is complete. */
  onDataEnd(): void;
  /** Stream `id` opened with `header` (a view, valid during the call). */
  onOpen(id: number, header: Uint8Array): void;
  /** `increment` more bytes of credit for stream `id` (0: the session). */
  onWindow(id: number, increment: number): void;
  /** Stream `id` was reset. */
  onReset(id: number, refused: boolean, reason: string): void;
  /** A ping (or, with `ack`, the answer to ours). */
  onPing(ack: boolean, opaque: number): void;
  /** The peer goes away; it processed its streams up to `lastId`. */
  onGoAway(lastId: number, reason: string): void;
  /** A datagram for `flowId` (a view, valid during the call). */
  onDatagram(flowId: number, payload: Uint8Array): void;
}

const enum State {
  Preamble,
  Header,
  Data,
  Payload,
}

const reasons = new TextDecoder(); // replaces bad UTF-8: reasons are only shown

/** Decodes one connection's frames, statefully across reads. */
export class FrameDecoder {
  #handler: FrameHandler;
  #state = State.Preamble;
  #type = 0;
  #id = 0;
  #length = 0;
  #dataLeft = 0;

  /** `handler` receives every frame. */
  constructor(handler: FrameHandler) {
    this.#handler = handler;
  }

  /** Whether the decoder sits between frames (a clean place for the connection to end). */
  get atBoundary(): boolean {
    return this.#state === State.Header;
  }

  /** Whether the peer's preamble has been read. */
  get started(): boolean {
    return this.#state !== State.Preamble;
  }

  /**
   * Decodes the frames in `buf[start..end]`; returns the offset of the first
   * byte not consumed (a partial header or non-DATA payload), which the
   * caller keeps and feeds again with more bytes after it.
   */
  feed(buf: Uint8Array, start: number, end: number): number {
    const h = this.#handler;
    while (true) {
      const avail = end - start;
      switch (this.#state) {
        case State.Preamble: {
          checkMagic(buf, start, Math.min(avail, MAGIC.length));
          if (avail < PREAMBLE_SIZE) return start;
          const version = buf[start + 4]!;
          start += PREAMBLE_SIZE;
          this.#state = State.Header;
          h.onPreamble(version);
          break;
        }
        case State.Header: {
          if (avail < HEADER_SIZE) return start;
          start = this.#header(buf, start);
          break;
        }
        case State.Data: {
          if (avail === 0) return start;
          const n = avail < this.#dataLeft ? avail : this.#dataLeft;
          this.#dataLeft -= n;
          if (this.#dataLeft === 0) this.#state = State.Header;
          h.onDataChunk(buf, start, n);
          start += n;
          if (this.#dataLeft === 0) h.onDataEnd();
          break;
        }
        case State.Payload: {
          if (avail < this.#length) return start;
          const payload = buf.subarray(start, start + this.#length);
          start += this.#length;
          this.#state = State.Header;
          this.#payload(payload);
          break;
        }
      }
    }
  }

  /**
   * Where the connection ended, if not between two frames: a description
   * for the error, or null for a clean end.
   */
  unfinished(): string | null {
    if (this.#state === State.Preamble) return "before the peer's mux preamble";
    if (this.#state === State.Header) return null;
    return `inside a ${FRAME_NAMES[this.#type]} frame for stream ${this.#id}`;
  }

  #header(buf: Uint8Array, at: number): number {
    const type = buf[at]!;
    const flags = buf[at + 1]!;
    const id = readU32(buf, at + 2);
    const value = readU32(buf, at + 6);
    if (type >= FRAME_TYPES) throw new MuxProtocolError(`unknown mux frame type ${type}`);
    const name = FRAME_NAMES[type]!;
    if ((flags & ~ALLOWED_FLAGS[type]!) !== 0) {
      throw new MuxProtocolError(`${name} frame with unknown flags 0x${flags.toString(16)}`);
    }
    if (type === PING && id !== 0) {
      throw new MuxProtocolError(`PING frame with stream id ${id} (expected 0)`);
    }
    if (id === 0 && (type === DATA || type === OPEN || type === RESET)) {
      throw new MuxProtocolError(`${name} frame for stream 0 (stream ids start at 1)`);
    }
    this.#type = type;
    this.#id = id;
    const h = this.#handler;
    const next = at + HEADER_SIZE;
    if (type === WINDOW) {
      if (value === 0) throw new MuxProtocolError(`WINDOW frame for stream ${id} grants 0 bytes`);
      h.onWindow(id, value);
      return next;
    }
    if (type === PING) {
      h.onPing((flags & FLAG_ACK) !== 0, value);
      return next;
    }
    const max = MAX_PAYLOAD[type]!;
    if (value > max) {
      throw new MuxProtocolError(
        `${name} frame for stream ${id} carries ${value} bytes (at most ${max} allowed)`,
      );
    }
    if (type === DATA) {
      h.onDataStart(id, value, (flags & FLAG_FIN) !== 0);
      if (value === 0) h.onDataEnd();
      else {
        this.#dataLeft = value;
        this.#state = State.Data;
      }
      return next;
    }
    if (type === RESET && value === 0) {
      throw new MuxProtocolError(`RESET frame for stream ${id} without its code byte`);
    }
    this.#length = value;
    this.#state = State.Payload;
    return next;
  }

  #payload(payload: Uint8Array): void {
    const h = this.#handler;
    const id = this.#id;
    switch (this.#type) {
      case OPEN:
        h.onOpen(id, payload);
        return;
      case RESET: {
        const code = payload[0]!;
        if (code > RESET_REFUSED) {
          throw new MuxProtocolError(`RESET frame for stream ${id} with unknown code ${code}`);
        }
        h.onReset(id, code === RESET_REFUSED, reasons.decode(payload.subarray(1)));
        return;
      }
      case GOAWAY:
        h.onGoAway(id, reasons.decode(payload));
        return;
      case DATAGRAM:
        h.onDatagram(id, payload);
        return;
    }
  }
}

/** Fails at the first byte that cannot start the preamble, with a hint at what it was. */
function checkMagic(buf: Uint8Array, start: number, count: number): void {
  for (let i = 0; i < count; i++) {
    if (buf[start + i] === MAGIC[i]) continue;
    const got = Array.from(
      buf.subarray(start, start + count),
      (b) => b.toString(16).padStart(2, "0"),
    )
      .join(" ");
    const hint = buf[start] === 0x16
      ? ": the peer speaks TLS, and this side does not"
      : ": the peer is not a burrow mux endpoint";
    throw new MuxProtocolError(`expected the mux preamble "BMUX", got bytes ${got}${hint}`);
  }
}
