/**
 * The shapes a mux session shares with its callers: the connection it runs
 * on, why it ended, and its counters.
 *
 * @module
 */

export type { Datagram } from "./datagrams.ts";

/** A byte connection: Deno's TcpConn and TlsConn fit. */
export interface ByteConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** Why a session ended. */
export type MuxCloseReason =
  /** `close()` was called on this side. */
  | { kind: "closed" }
  /** One side sent GoAway, and every stream then finished. */
  | { kind: "drained" }
  /** The connection failed or the peer broke the protocol. */
  | { kind: "failed"; error: Error };

/** Counters of a session, as {@linkcode MuxSession.stats} reports them. */
export interface MuxStats {
  /** Streams open now. */
  streams: number;
  /** Streams this side opened, in all. */
  opened: number;
  /** Streams the peer opened that this side took, in all. */
  accepted: number;
  /** Streams the peer opened that this side refused. */
  refused: number;
  /** `write()` calls on the connection, and bytes written. */
  writes: number;
  bytesOut: number;
  /** `read()` calls on the connection, and bytes read. */
  reads: number;
  bytesIn: number;
  /** Bytes received on streams and not yet read by their readers. */
  buffered: number;
  /** Datagrams dropped before sending (queue full), and on arrival (queue full). */
  datagramsDroppedOut: number;
  datagramsDroppedIn: number;
}
