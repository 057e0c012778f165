/**
 * Work connections on the server, each owned by one {@linkcode WorkConn}
 * from the moment it is pooled to the moment its user is joined, and the
 * pool of one session ({@linkcode WorkConns}): the source a user handler
 * asks for "a work stream for this user".
 *
 * While idle, a work connection is read all the time: the client sends
 * keepalive pings (they keep NAT mappings alive) and nothing else, and an
 * idle connection that closes or misbehaves leaves the pool at once, so no
 * user is ever handed a dead one.
 *
 * @module
 */

import type { Conn, Duplex } from "../transport/transport.ts";
import { closeQuietly, netReason } from "../transport/net.ts";
import {
  encodeFrame,
  type FrameReader,
  parseWorkReply,
  type ServerControlMessage,
  type Start,
  withDeadline,
  type WorkReply,
  writeAll,
} from "../protocol/protocol.ts";
import { WorkPool } from "./registry.ts";

/** A user connection waits at most this long for a work connection, and for its `started`. */
export const WORK_TIMEOUT_MS = 10_000;
/** Most idle work connections kept per session; surplus ones are closed. */
const MAX_IDLE_WORK = 64;

/** Users waiting for a work connection, across every session of a server. */
export interface PendingUsers {
  count: number;
}

/** One work stream for one user: `start` it, then join the user to `stream`. */
export interface WorkStream {
  /** The raw stream, once started. */
  readonly stream: Duplex;
  /** Sends `start`; throws (with the stream closed) if it cannot be written. */
  start(start: Start): Promise<void>;
  /** Resolves to the bytes after the client's `started`, or rejects with why not. */
  started(): Promise<Uint8Array>;
}

/** What a user handler asks for a work stream (pooled connections today, a multiplexer later). */
export interface WorkSource {
  /** Idle work streams ready now. */
  readonly idle: number;
  /** An idle stream now, or one asked for and awaited up to WORK_TIMEOUT_MS; undefined if none came. */
  take(): Promise<WorkStream | undefined>;
}

/** A work connection from pooled to joined. */
export class WorkConn implements WorkStream {
  #conn: Conn;
  #reader: FrameReader;
  /** The client's answer to `start` (null: it closed), read from the moment it was pooled. */
  #answer: Promise<WorkReply | null>;

  /** Starts watching `conn`; `lost` is called if it closes or misbehaves while idle. */
  constructor(conn: Conn, reader: FrameReader, lost: (work: WorkConn) => void) {
    this.#conn = conn;
    this.#reader = reader;
    this.#answer = this.#watch(lost);
    this.#answer.catch(() => {}); // failing while idle is handled by #watch; a user awaits it otherwise
  }

  get stream(): Duplex {
    return this.#conn;
  }

  close(): void {
    closeQuietly(this.#conn);
  }

  /**
   * The start frame is written before the copy begins, so no user byte can
   * overtake it (and it is not counted as one); the client's answer then
   * leads the work-to-user direction.
   */
  async start(start: Start): Promise<void> {
    try {
      await writeAll(this.#conn, encodeFrame(start));
    } catch (err) {
      this.close();
      throw new Error(`work connection failed (${netReason(err)})`);
    }
  }

  async started(): Promise<Uint8Array> {
    const reply = await withDeadline(
      this.#answer,
      WORK_TIMEOUT_MS,
      `the client did not answer on its work connection within ${WORK_TIMEOUT_MS / 1000}s`,
    );
    if (reply === null) throw new Error("the client closed the work connection");
    if (reply.type === "start_failed") {
      throw new Error(`client could not reach the app: ${reply.message}`);
    }
    return this.#reader.takeBuffered();
  }

  /** Resolves to the first frame that is not a keepalive ping, or null if the client closed. */
  async #watch(
    lost: (work: WorkConn) => void,
  ): Promise<Exclude<WorkReply, { type: "ping" }> | null> {
    try {
      while (true) {
        const raw = await this.#reader.read();
        if (raw === null) {
          lost(this);
          return null;
        }
        const reply = parseWorkReply(raw);
        if (reply.type !== "ping") return reply;
      }
    } catch (err) {
      lost(this);
      throw err;
    }
  }
}

/** The idle work connections of one session, and the users waiting for one. */
export class WorkConns implements WorkSource {
  #pool = new WorkPool<WorkConn>();
  #control: { send(message: ServerControlMessage): Promise<void> };
  #pending: PendingUsers;

  /** `control` is the session's control connection, where more work connections are asked for. */
  constructor(
    control: { send(message: ServerControlMessage): Promise<void> },
    pending: PendingUsers,
  ) {
    this.#control = control;
    this.#pending = pending;
  }

  get idle(): number {
    return this.#pool.idle;
  }

  /** Pools a proven work connection, or hands it to a waiting user. */
  add(conn: Conn, reader: FrameReader): void {
    if (this.#pool.idle >= MAX_IDLE_WORK) return closeQuietly(conn);
    const work = new WorkConn(conn, reader, (lost) => {
      if (this.#pool.remove(lost)) lost.close();
    });
    if (!this.#pool.offer(work)) work.close();
  }

  async take(): Promise<WorkStream | undefined> {
    const idle = this.#pool.takeIdle();
    if (idle) return idle;
    this.#control.send({ type: "want_work", count: 1 }).catch(() => {});
    this.#pending.count++;
    try {
      return await this.#pool.wait(WORK_TIMEOUT_MS);
    } finally {
      this.#pending.count--;
    }
  }

  /** Closes the pool: waiting users get nothing, idle connections are closed. */
  close(): void {
    for (const work of this.#pool.close()) work.close();
  }
}
