/**
 * The typed failures of a mux session and its streams. A session ends with
 * exactly one reason; its streams' pending and later reads and writes reject
 * with the same error, so a caller can tell a peer that broke the protocol
 * (`MuxProtocolError`, `MuxVersionError`) from a connection that went away
 * (`MuxConnectionError`) from its own close (`MuxClosedError`), and a single
 * stream's reset (`StreamResetError`) from all of those.
 *
 * @module
 */

import { ProtocolError } from "../../util/errors.ts";
import type { MuxCloseReason } from "./types.ts";

/**
 * The peer sent bytes that break the mux protocol: an unknown frame type, a
 * frame for a stream it never opened, more data than its window allowed, an
 * oversize frame, no preamble in time. The session ends; this is its reason.
 */
export class MuxProtocolError extends ProtocolError {
  /** Always `"MuxProtocolError"`. */
  override name = "MuxProtocolError";
}

/**
 * The peer speaks another version of the mux protocol. The message says which
 * program to upgrade: the one with the lower version.
 *
 * @example
 * ```ts
 * import { MuxVersionError } from "./errors.ts";
 * const err = new MuxVersionError(1, 2, "burrow-client");
 * console.log(err.message); // expected mux v1, got v2: upgrade burrow-client
 * ```
 */
export class MuxVersionError extends MuxProtocolError {
  /** Always `"MuxVersionError"`. */
  override name = "MuxVersionError";
  /** Our version. */
  readonly ours: number;
  /** The version the peer announced. */
  readonly theirs: number;
  /** `ours` and `theirs` are versions; `upgrade` names the side that is older. */
  constructor(ours: number, theirs: number, upgrade: string) {
    super(`expected mux v${ours}, got v${theirs}: upgrade ${upgrade}`);
    this.ours = ours;
    this.theirs = theirs;
  }
}

/**
 * The connection under the session is gone or useless: it closed while
 * streams were open, a read or write failed, or the peer stayed silent (or
 * stopped reading) past the keepalive timeout.
 */
export class MuxConnectionError extends Error {
  /** Always `"MuxConnectionError"`. */
  override name = "MuxConnectionError";
}

/** The session or stream was closed on this side; later calls reject with this. */
export class MuxClosedError extends Error {
  /** Always `"MuxClosedError"`. */
  override name = "MuxClosedError";
}

/**
 * One stream was reset (an abortive close) by this side or by the peer. Its
 * reads and writes reject with this; the session and other streams go on.
 * `refused` is set when the peer never processed the stream (too many
 * streams, accept backlog full, session going away), so opening it again,
 * on another session, is safe.
 */
export class StreamResetError extends Error {
  /** Always `"StreamResetError"`. */
  override name = "StreamResetError";
  /** Whether the peer reset it (else this side did). */
  readonly remote: boolean;
  /** Whether the peer refused it before processing it (safe to retry). */
  readonly refused: boolean;
  /** The reason given with the reset, possibly empty. */
  readonly reason: string;
  /** `id` is the stream's id, used in the message. */
  constructor(id: number, remote: boolean, refused: boolean, reason: string) {
    const who = remote ? (refused ? "refused by the peer" : "reset by the peer") : "reset here";
    super(`stream ${id} ${who}${reason ? `: ${reason}` : ""}`);
    this.remote = remote;
    this.refused = refused;
    this.reason = reason;
  }
}

/**
 * `err` as a session's end reason: mux errors as they are, the connection's
 * own failures (reset, broken pipe, closed) as a `MuxConnectionError` that
 * keeps them as its cause, anything else (a bug) unchanged.
 */
export function asSessionError(err: unknown): Error {
  if (err instanceof Error && err.name.startsWith("Mux")) return err;
  const e = Deno.errors;
  if (
    err instanceof e.BadResource || err instanceof e.ConnectionReset ||
    err instanceof e.BrokenPipe || err instanceof e.ConnectionAborted ||
    err instanceof e.UnexpectedEof || err instanceof e.TimedOut || err instanceof e.NotConnected
  ) {
    return new MuxConnectionError(`the connection failed: ${err.message}`, { cause: err });
  }
  return err instanceof Error ? err : new Error(String(err));
}

/** The error a session's calls fail with once it ended for `reason`. */
export function endError(reason: MuxCloseReason | null): Error {
  if (reason?.kind === "failed") return reason.error;
  return new MuxClosedError(
    reason?.kind === "drained" ? "the mux session ended" : "the mux session was closed",
  );
}
