/**
 * The mux wire format, in one place: constants first, then the frame types,
 * then the header codec.
 *
 * Each side writes a 5-byte preamble first ("BMUX" and the version byte) and
 * frames after it, without waiting for the peer's: nothing in the protocol
 * needs a round trip. Every frame is a 10-byte header and a payload:
 *
 * ```
 * offset 0  type   u8
 *        1  flags  u8   (FIN on DATA, ACK on PING; other bits must be 0)
 *        2  id     u32  big-endian: stream id (0 = the session), or flow id
 *        6  value  u32  big-endian: payload length, or the increment (WINDOW),
 *                                   or the opaque ping number (PING)
 * ```
 *
 * Stream ids are odd for streams the client side opens, even for the server
 * side's; both only grow, so a frame for an id below the highest seen belongs
 * to a stream that has ended (and is dropped), one above it to a stream
 * never opened (a protocol error).
 *
 * Flow control is by credit, per stream and for the whole session: each
 * receiver starts by granting {@linkcode INITIAL_STREAM_WINDOW} per stream and
 * {@linkcode INITIAL_SESSION_WINDOW} for the session, both fixed by the version
 * so data may follow an OPEN at once, and grants more with WINDOW frames as
 * its application reads. Sending past a grant is a protocol error.
 *
 * @module
 */

/** This implementation's protocol version, the fifth preamble byte. */
export const MUX_VERSION = 1;
/** "BMUX": the first four bytes each side sends. */
export const MAGIC: Uint8Array = new Uint8Array([0x42, 0x4d, 0x55, 0x58]);
/** The preamble's length: the magic and the version byte. */
export const PREAMBLE_SIZE = 5;
/** Every frame's fixed header length. */
export const HEADER_SIZE = 10;
/** Room a `writeWithHeadroom` buffer leaves before its payload: one header. */
export const MUX_HEADROOM = HEADER_SIZE;

/** Stream data; FIN ends the sender's direction. */
export const DATA = 0;
/** Opens a stream; the payload is the opener's opaque header. */
export const OPEN = 1;
/** Grants `value` more bytes of credit on stream `id` (0: the session). */
export const WINDOW = 2;
/** Aborts stream `id`; payload: one code byte, then a UTF-8 reason. */
export const RESET = 3;
/** Asks for (flags 0) or answers (ACK) a ping; `value` is echoed. */
export const PING = 4;
/** No new streams; `id` is the last peer stream processed; payload: UTF-8 reason. */
export const GOAWAY = 5;
/** An unreliable message for flow `id`; never blocked behind stream data. */
export const DATAGRAM = 6;
/** Frame type numbers run from 0 to this, exclusive. */
export const FRAME_TYPES = 7;

/** One frame type number. */
export type FrameType =
  | typeof DATA
  | typeof OPEN
  | typeof WINDOW
  | typeof RESET
  | typeof PING
  | typeof GOAWAY
  | typeof DATAGRAM;

/** Names for error messages, by type number. */
export const FRAME_NAMES: readonly string[] = [
  "DATA",
  "OPEN",
  "WINDOW",
  "RESET",
  "PING",
  "GOAWAY",
  "DATAGRAM",
];

/** DATA flag: the sender's last bytes on this stream. */
export const FLAG_FIN = 0x01;
/** PING flag: this is the answer. */
export const FLAG_ACK = 0x01;
/** Flag bits each frame type may carry, by type number. */
export const ALLOWED_FLAGS: readonly number[] = [FLAG_FIN, 0, 0, 0, FLAG_ACK, 0, 0];

/** RESET code: the application aborted the stream. */
export const RESET_ABORT = 0;
/** RESET code: the stream was refused before it was processed (safe to retry). */
export const RESET_REFUSED = 1;

/** Largest DATA payload a peer may send. */
export const MAX_DATA_PAYLOAD = 256 * 1024;
/** Largest OPEN header. */
export const MAX_OPEN_HEADER = 16 * 1024;
/** Largest RESET or GOAWAY payload (a reason is for people, not data). */
export const MAX_REASON = 1024;
/** Largest DATAGRAM payload: a UDP datagram's. */
export const MAX_DATAGRAM = 65_535;
/** Largest payload of each frame type (0: the value is not a length), by type number. */
export const MAX_PAYLOAD: readonly number[] = [
  MAX_DATA_PAYLOAD,
  MAX_OPEN_HEADER,
  0,
  MAX_REASON,
  0,
  MAX_REASON,
  MAX_DATAGRAM,
];

/** Credit every new stream starts with, in each direction. */
export const INITIAL_STREAM_WINDOW = 256 * 1024;
/** Credit the session starts with, in each direction. */
export const INITIAL_SESSION_WINDOW = 4 * 1024 * 1024;
/** Credit beyond this (a peer's WINDOW frames adding up) is a protocol error. */
export const MAX_CREDIT = 2 ** 31;
/** Highest stream id; a session that has used them all must be replaced. */
export const MAX_STREAM_ID = 2 ** 32 - 1;

/** Writes a frame header at `at` in `buf`; returns the offset after it. */
export function writeHeader(
  buf: Uint8Array,
  at: number,
  type: FrameType,
  flags: number,
  id: number,
  value: number,
): number {
  buf[at] = type;
  buf[at + 1] = flags;
  buf[at + 2] = id >>> 24;
  buf[at + 3] = id >>> 16;
  buf[at + 4] = id >>> 8;
  buf[at + 5] = id;
  buf[at + 6] = value >>> 24;
  buf[at + 7] = value >>> 16;
  buf[at + 8] = value >>> 8;
  buf[at + 9] = value;
  return at + HEADER_SIZE;
}

/** Reads the big-endian u32 at `at`. */
export function readU32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

/** The preamble this side sends: the magic and {@linkcode MUX_VERSION}. */
export function preamble(version = MUX_VERSION): Uint8Array {
  const out = new Uint8Array(PREAMBLE_SIZE);
  out.set(MAGIC);
  out[4] = version;
  return out;
}
