/**
 * The multiplexed transport: many streams and datagrams over one TCP or TLS
 * connection, so a new user connection costs one frame instead of a
 * connection, a handshake and a round trip.
 *
 * Vocabulary: a **session** runs over one byte connection; a **stream** is
 * one reliable two-way byte stream inside it (a user connection); a
 * **datagram** is one unreliable message for a **flow** (a UDP peer);
 * **credit** is how many bytes a receiver lets its peer send (its window).
 * The wire format is in `frame.ts`.
 *
 * @module
 */

export {
  MuxClosedError,
  MuxConnectionError,
  MuxProtocolError,
  MuxVersionError,
  StreamResetError,
} from "./errors.ts";
export { MUX_HEADROOM, MUX_VERSION } from "./frame.ts";
export type { MuxSessionOptions } from "./options.ts";
export { MuxPool, type MuxPoolEvent, type MuxPoolOptions } from "./pool.ts";
export { MuxSession } from "./session.ts";
export { PrefixedConn } from "./prefixed.ts";
export type { ByteConn, Datagram, MuxCloseReason, MuxStats } from "./types.ts";
export type { MuxStream } from "./stream.ts";
