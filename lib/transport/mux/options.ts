/**
 * A session's settings, with their defaults and bounds, checked once when
 * the session is made (a bad value is a programming error, reported with the
 * field's name).
 *
 * @module
 */

import { z } from "zod";
import { MAX_DATA_PAYLOAD, MAX_DATAGRAM, MAX_OPEN_HEADER } from "./frame.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

const int = (min: number, max: number) => z.number().int().min(min).max(max);

/** Bytes a read buffer keeps free for a whole non-DATA frame (a datagram is the largest). */
export const FRAME_ROOM = 80 * KiB;

const schema = z.strictObject({
  role: z.enum(["client", "server"]),
  maxStreams: int(1, 1 << 20).default(4096),
  acceptBacklog: int(1, 1 << 20).default(1024),
  maxHeader: int(0, MAX_OPEN_HEADER).default(MAX_OPEN_HEADER),
  maxStreamWindow: int(256 * KiB, 1 << 30).default(16 * MiB),
  sessionWindow: int(1 * MiB, 1 << 30).default(32 * MiB),
  chunk: int(1 * KiB, MAX_DATA_PAYLOAD).default(64 * KiB),
  writeBatch: int(16 * KiB, 16 * MiB).default(256 * KiB),
  readBuffer: int(2 * FRAME_ROOM, 16 * MiB).default(256 * KiB),
  keepaliveMs: int(0, 3_600_000).default(10_000),
  timeoutMs: int(1, 3_600_000).default(30_000),
  handshakeMs: int(1, 3_600_000).default(10_000),
  datagramQueue: int(0, 1 << 20).default(1024),
  datagramBytes: int(MAX_DATAGRAM, 64 * MiB).default(256 * KiB),
  names: z.strictObject({ client: z.string(), server: z.string() })
    .default({ client: "burrow-client", server: "burrow-server" }),
});

/**
 * Options for a {@linkcode MuxSession}. Only `role` is required.
 */
export interface MuxSessionOptions {
  /** Which end this is: the client side opens odd stream ids, the server side even ones. */
  role: "client" | "server";
  /** Most streams open at once, both directions together; more are refused. @default 4096 */
  maxStreams?: number;
  /** Most opened streams waiting for `accept()`; more are refused. @default 1024 */
  acceptBacklog?: number;
  /** Largest OPEN header accepted, in bytes. @default 16384 */
  maxHeader?: number;
  /** A stream's receive window grows (while its reader keeps up) to this. @default 16 MiB */
  maxStreamWindow?: number;
  /** Most bytes all streams together may have received and not yet read. @default 32 MiB */
  sessionWindow?: number;
  /** Most bytes one stream sends per turn before the next stream's turn. @default 64 KiB */
  chunk?: number;
  /** Most stream bytes per write on the connection. @default 256 KiB */
  writeBatch?: number;
  /** The connection's read buffer. @default 256 KiB */
  readBuffer?: number;
  /** Ping after this long without hearing from the peer (0: never). @default 10000 */
  keepaliveMs?: number;
  /** End the session when the peer is silent, or does not read, for this long. @default 30000 */
  timeoutMs?: number;
  /** The peer's preamble must arrive within this. @default 10000 */
  handshakeMs?: number;
  /** Most received datagrams waiting for `receiveDatagram()`; more are dropped. @default 1024 */
  datagramQueue?: number;
  /** Most datagram bytes waiting for one write; more are dropped. @default 256 KiB */
  datagramBytes?: number;
  /** Program names for the version-mismatch message. */
  names?: { client: string; server: string };
  /**
   * Called with every datagram as it arrives, instead of queueing it. The
   * payload is a view valid only during the call. If it throws, the session
   * ends with that error.
   */
  onDatagram?: (flowId: number, payload: Uint8Array) => void;
}

/** Options with every default filled in. */
export type MuxSettings = z.infer<typeof schema> & {
  onDatagram?: (flowId: number, payload: Uint8Array) => void;
};

/** Checks `options` and fills in the defaults; throws a `RangeError` naming the bad field. */
export function muxSettings(options: MuxSessionOptions): MuxSettings {
  const { onDatagram, ...rest } = options;
  const parsed = schema.safeParse(rest);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new RangeError(
      `mux option ${issue?.path.join(".") ?? "?"}: ${issue?.message ?? "invalid"}`,
    );
  }
  const settings: MuxSettings = parsed.data;
  if (onDatagram) settings.onDatagram = onDatagram;
  return settings;
}
