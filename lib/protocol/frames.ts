/**
 * The framing every burrow connection starts with: the client's four-byte
 * preamble, then length-prefixed JSON frames (a 4-byte big-endian length,
 * then that many bytes of UTF-8 JSON), each at most {@linkcode MAX_FRAME_BYTES}.
 * Control connections stay framed for their whole life; a work connection
 * switches to raw bytes after its `start`/`started` exchange, which is why
 * the reader hands back whatever it read past the last frame. What the
 * frames mean lives in the per-phase message modules beside this one.
 *
 * @module
 */

import { ProtocolError } from "../util/errors.ts";

/**
 * The four bytes a client sends first on every connection, before it reads
 * the challenge (inside TLS when TLS is on). A plaintext client that meets a
 * TLS server thus gets an immediate TLS alert instead of waiting for a
 * challenge that never comes, and a plaintext server recognises a TLS client
 * by its ClientHello. Both sides can then say what to change.
 */
export const CLIENT_PREAMBLE: Uint8Array = new Uint8Array([0x42, 0x52, 0x57, 0x01]); // "BRW" 1
/** Hard cap on one frame's payload. Control messages are small; 64 KiB is generous. */
export const MAX_FRAME_BYTES = 64 * 1024;

/** Any message: a JSON object discriminated by `type`. */
export interface Message {
  type: string;
}

/**
 * `promise`, or a `ProtocolError` with `message` once `ms` pass first. The
 * caller then closes the connection, which ends the abandoned operation; its
 * later failure is swallowed here.
 */
export function withDeadline<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ProtocolError(message)), ms);
  });
  promise.catch(() => {});
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The peer sent a TLS record (handshake or alert) where burrow expected its
 * own bytes: one side runs TLS and the other does not.
 */
export class TlsRecordError extends ProtocolError {
  /** Always `"TlsRecordError"`. */
  override name = "TlsRecordError";
}

/** A TLS record starts with content type 21 (alert) or 22 (handshake), then major version 3. */
function looksLikeTls(buf: Uint8Array, at: number): boolean {
  const type = buf[at];
  return (type === 0x15 || type === 0x16) && buf[at + 1] === 0x03;
}

/** Anything with Deno's `read` contract: fills part of `p`, or null at EOF. */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

/** Anything with Deno's `write` contract: writes part of `p`, returns how much. */
export interface ByteWriter {
  write(p: Uint8Array): Promise<number>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Encodes one message as a frame: length prefix and JSON. */
export function encodeFrame<M extends Message>(message: M): Uint8Array {
  const body = encoder.encode(JSON.stringify(message));
  if (body.length > MAX_FRAME_BYTES) {
    throw new ProtocolError(
      `frame of ${body.length} bytes exceeds the ${MAX_FRAME_BYTES}-byte cap`,
    );
  }
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, 4);
  return frame;
}

/** Writes every byte of `p`, however many calls it takes. */
export async function writeAll(w: ByteWriter, p: Uint8Array): Promise<void> {
  let off = 0;
  while (off < p.length) off += await w.write(off === 0 ? p : p.subarray(off));
}

/**
 * Serialises frame writes on one connection, so that messages sent from
 * different tasks never interleave their bytes. `M` is what this side may
 * send on it.
 */
export class FrameWriter<M extends Message = Message> {
  #w: ByteWriter;
  #tail: Promise<void> = Promise.resolve();
  constructor(w: ByteWriter) {
    this.#w = w;
  }
  /** Queues one message; resolves when it is written, rejects if the write fails. */
  send<T extends M>(message: T): Promise<void> {
    const frame = encodeFrame(message);
    const next = this.#tail.then(() => writeAll(this.#w, frame));
    this.#tail = next.catch(() => {});
    return next;
  }
}

/**
 * Reads frames from a byte stream without assuming one read is one frame.
 * Buffers at most one frame (plus what the last read brought), never more.
 */
export class FrameReader {
  #src: ByteReader;
  #buf = new Uint8Array(4096);
  #start = 0;
  #end = 0;

  constructor(src: ByteReader) {
    this.#src = src;
  }

  /**
   * The next frame's decoded JSON, or null on a clean end of stream between
   * frames. Throws `ProtocolError` on a truncated, oversize or non-JSON frame,
   * or when `timeoutMs` passes first (the caller then closes the connection).
   */
  read(timeoutMs?: number): Promise<unknown> {
    if (timeoutMs === undefined) return this.#read();
    return withDeadline(this.#read(), timeoutMs, `no complete frame within ${timeoutMs / 1000}s`);
  }

  /**
   * Reads the client's preamble ({@linkcode CLIENT_PREAMBLE}). Throws
   * `TlsRecordError` when the peer opened with a TLS ClientHello instead,
   * and `ProtocolError` for anything else that is not the preamble. The
   * caller bounds it in time, with the rest of the handshake.
   */
  async readPreamble(): Promise<void> {
    const ok = await this.#fill(CLIENT_PREAMBLE.length);
    if (!ok) throw new ProtocolError("closed before saying hello");
    if (looksLikeTls(this.#buf, this.#start)) {
      throw new TlsRecordError("the client speaks TLS");
    }
    for (let i = 0; i < CLIENT_PREAMBLE.length; i++) {
      if (this.#buf[this.#start + i] !== CLIENT_PREAMBLE[i]) {
        throw new ProtocolError("not a burrow client (bad preamble)");
      }
    }
    this.#start += CLIENT_PREAMBLE.length;
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  /** The bytes read past the last frame; the reader must not be used after. */
  takeBuffered(): Uint8Array {
    const rest = this.#buf.slice(this.#start, this.#end);
    this.#start = this.#end = 0;
    return rest;
  }

  async #read(): Promise<unknown> {
    if (!(await this.#fill(4))) return null;
    const view = new DataView(this.#buf.buffer, this.#buf.byteOffset + this.#start, 4);
    const length = view.getUint32(0);
    if (length > MAX_FRAME_BYTES && looksLikeTls(this.#buf, this.#start)) {
      throw new TlsRecordError("got a TLS record where a burrow frame was expected");
    }
    if (length > MAX_FRAME_BYTES) {
      throw new ProtocolError(`frame of ${length} bytes exceeds the ${MAX_FRAME_BYTES}-byte cap`);
    }
    if (!(await this.#fill(4 + length))) throw new ProtocolError("connection closed mid-frame");
    const body = this.#buf.subarray(this.#start + 4, this.#start + 4 + length);
    this.#start += 4 + length;
    let value: unknown;
    try {
      value = JSON.parse(decoder.decode(body));
    } catch {
      throw new ProtocolError("frame is not valid UTF-8 JSON");
    }
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return value;
  }

  /** Ensures `n` buffered bytes. False on EOF with nothing buffered; throws on EOF mid-way. */
  async #fill(n: number): Promise<boolean> {
    while (this.#end - this.#start < n) {
      if (this.#buf.length - this.#start < n) this.#compact(n);
      const got = await this.#src.read(this.#buf.subarray(this.#end));
      if (got === null) {
        if (this.#end === this.#start) return false;
        throw new ProtocolError("connection closed mid-frame");
      }
      this.#end += got;
    }
    return true;
  }

  /** Moves unread bytes to the front, growing the buffer when `n` bytes would not fit. */
  #compact(n: number): void {
    const unread = this.#buf.subarray(this.#start, this.#end);
    if (n > this.#buf.length) {
      const next = new Uint8Array(Math.max(n, Math.min(this.#buf.length * 2, MAX_FRAME_BYTES + 4)));
      next.set(unread);
      this.#buf = next;
    } else {
      this.#buf.copyWithin(0, this.#start, this.#end);
    }
    this.#end -= this.#start;
    this.#start = 0;
  }
}
