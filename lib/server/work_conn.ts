/**
 * Work streams on the server: the source a user handler asks for "a byte
 * stream to the client for this user" ({@linkcode WorkSource}), and its one
 * implementation, {@linkcode MuxWork}.
 *
 * Since protocol v5 a client keeps a few (2 by default, at most 4 asked
 * for, {@linkcode MAX_MUX_CONNS} accepted) work connections per session,
 * each opened with `work_hello` (the session's proof, checked as before) and
 * then carrying a mux session (`lib/transport/mux/`). The control connection
 * stays plain framed JSON: it is where the group is admitted, taken over and
 * pinged, and keeping it apart means a bulk user can never delay a ping.
 *
 * Each user is one stream, opened by the server on the session with the
 * fewest streams, with one OPEN frame whose header is the `start` message
 * (app, work id, the user's source and the public destination address for a
 * PROXY protocol header): no per-user connection, handshake or round trip.
 * The server sends the user's first bytes right behind it. The client dials
 * the local app, answers with one byte ({@linkcode STARTED}: v4's `started`,
 * which bounds how long a user waits for a client that stopped answering)
 * and joins; if it cannot reach the app, it resets the stream with the
 * reason (prefixed {@linkcode UNREACHABLE}), which ends the user at once.
 * A reset on either end (or a failed join, which closes the stream before
 * its FIN arrived) resets the stream, so the other end is closed at once
 * too, never half-closed. A session that fails fails only its own streams;
 * the client dials a new one.
 *
 * A UDP flow is a stream too (header `udp_flow`, see `lib/protocol/work.ts`)
 * whose datagrams travel as DATAGRAM frames on the same mux session; the
 * sessions hand every datagram they receive to {@linkcode MuxWork.flows}.
 *
 * @module
 */

import type { Duplex } from "../transport/transport.ts";
import type { Conn } from "../transport/transport.ts";
import { closeQuietly, netReason } from "../transport/net.ts";
import {
  MuxClosedError,
  MuxSession,
  type MuxStream,
  PrefixedConn,
  StreamResetError,
} from "../transport/mux/mod.ts";
import { errorMessage } from "../util/errors.ts";
import { type FrameReader, type Start, type UdpFlow, withDeadline } from "../protocol/protocol.ts";
import { FlowRoutes } from "./udp_flows.ts";

/** A user connection waits at most this long for a work connection (a mux session) to be up. */
export const WORK_TIMEOUT_MS = 10_000;
/** Most mux connections kept per session; more are closed. */
export const MAX_MUX_CONNS = 8;
/** The client's first byte on a stream: it reached the app; the app's bytes follow. */
export const STARTED = 0;
/** The prefix of a client's reset reason when it could not reach the local app. */
export const UNREACHABLE = "unreachable: ";

/** Users waiting for a work connection, across every session of a server. */
export interface PendingUsers {
  count: number;
}

/** One work stream for one user: `start` it, then join the user to `stream`. */
export interface WorkStream {
  /** The stream, once started. */
  readonly stream: Duplex;
  /** Opens the stream with `start` as its header; throws if no connection can take it. */
  start(start: Start): Promise<void>;
  /**
   * Resolves (to bytes to send the user first: none) once the client says it
   * reached the app, or rejects with why not (within WORK_TIMEOUT_MS).
   */
  started(): Promise<Uint8Array>;
  /** Resets the stream, so the client ends its side at once. */
  reset(): void;
}

/** What a user handler asks for a work stream. */
export interface WorkSource {
  /** Work connections that can take a stream now (0: a user would wait). */
  readonly idle: number;
  /** A work stream now, or once a connection is up (at most WORK_TIMEOUT_MS); undefined if none came. */
  take(): Promise<WorkStream | undefined>;
}

/** Timing of the server's mux sessions. */
export interface MuxWorkOptions {
  /** Ping a silent client after this long. */
  keepaliveMs: number;
  /** End a session whose client is silent this long. */
  timeoutMs: number;
}

const encoder = new TextEncoder();

/** The mux connections of one session, and the users waiting for one. */
export class MuxWork implements WorkSource {
  /** Where the datagrams of this session's UDP flows go. */
  readonly flows: FlowRoutes = new FlowRoutes();
  #sessions = new Set<MuxSession>();
  #waiters = new Set<() => void>();
  #pending: PendingUsers;
  #options: MuxWorkOptions;
  #closed = false;

  constructor(pending: PendingUsers, options: MuxWorkOptions) {
    this.#pending = pending;
    this.#options = options;
  }

  get idle(): number {
    let n = 0;
    for (const s of this.#sessions) if (s.canOpen) n++;
    return n;
  }

  /** Runs a mux session on a proven work connection (`reader` may hold its first bytes). */
  add(conn: Conn, reader: FrameReader): void {
    if (this.#closed || this.#sessions.size >= MAX_MUX_CONNS) return closeQuietly(conn);
    const session = new MuxSession(new PrefixedConn(conn, reader.takeBuffered()), {
      role: "server",
      keepaliveMs: this.#options.keepaliveMs,
      timeoutMs: this.#options.timeoutMs,
      acceptBacklog: 1,
      names: { client: "burrow", server: "burrow-server" },
      onDatagram: (flowId, payload) => this.flows.deliver(session, flowId, payload),
    });
    this.#sessions.add(session);
    session.closed.then(() => this.#sessions.delete(session));
    // The client opens no streams: any it tries are refused.
    (async () => {
      for await (const stream of session.incoming()) stream.reset("the server opens streams");
    })().catch(() => {});
    this.#wake();
  }

  async take(): Promise<WorkStream | undefined> {
    if (this.#closed) return undefined;
    if (this.idle > 0) return this.#stream();
    this.#pending.count++;
    try {
      return await this.ready() ? this.#stream() : undefined;
    } finally {
      this.#pending.count--;
    }
  }

  /**
   * True once a connection can take a stream (at once if one can); false if
   * none came within WORK_TIMEOUT_MS or the session closed.
   */
  async ready(): Promise<boolean> {
    const deadline = performance.now() + WORK_TIMEOUT_MS;
    while (!this.#closed && this.idle === 0) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.#waiters.add(done);
      });
    }
    return !this.#closed;
  }

  /** Closes every mux connection (their streams fail); waiting users get nothing. */
  close(): void {
    this.#closed = true;
    for (const s of this.#sessions) s.close();
    this.#sessions.clear();
    this.#wake();
  }

  #stream(): WorkStream {
    let opened: MuxStream | undefined;
    return {
      get stream(): Duplex {
        if (!opened) throw new Error("the work stream was not started");
        return opened;
      },
      start: (start: Start) => {
        opened = this.#open(encoder.encode(JSON.stringify(start)));
        return Promise.resolve();
      },
      started: () => {
        if (!opened) return Promise.reject(new Error("the work stream was not started"));
        return started(opened);
      },
      reset: () => opened?.reset(),
    };
  }

  /**
   * Opens a UDP flow's stream on the session with the fewest streams, at
   * once (a datagram is never waited for). Throws if no connection can take it.
   */
  openFlow(flow: UdpFlow): { stream: MuxStream; session: MuxSession } {
    return this.#openOn(encoder.encode(JSON.stringify(flow)));
  }

  /** Opens a stream on the session with the fewest streams. */
  #open(header: Uint8Array): MuxStream {
    return this.#openOn(header).stream;
  }

  #openOn(header: Uint8Array): { stream: MuxStream; session: MuxSession } {
    const candidates = [...this.#sessions].filter((s) => s.canOpen)
      .sort((a, b) => a.streamCount - b.streamCount);
    let last: unknown;
    for (const session of candidates) {
      try {
        return { stream: session.openStream(header), session };
      } catch (err) {
        last = err; // full or ending since we looked: try the next one
      }
    }
    throw new Error(
      `work connection failed (${last === undefined ? "none is up" : netReason(last)})`,
    );
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }
}

const EMPTY = new Uint8Array(0);

/**
 * Waits for the client's one-byte answer that leads its side of a stream:
 * it reached the app (the user's bytes were sent optimistically meanwhile).
 */
export async function started(stream: MuxStream): Promise<Uint8Array> {
  const answer = stream.read(new Uint8Array(1));
  answer.catch(() => {}); // after a deadline, the join closes the stream and this rejects
  const n = await withDeadline(
    answer,
    WORK_TIMEOUT_MS,
    `the client did not answer on its work connection within ${WORK_TIMEOUT_MS / 1000}s`,
  );
  if (n === null) throw new Error("the client closed the work stream");
  return EMPTY;
}

/** Why a join over a work stream failed, in words for the log and the `onClose` hook. */
export function describeWorkError(err: unknown): string {
  if (err instanceof StreamResetError && err.remote && err.reason.startsWith(UNREACHABLE)) {
    return `client could not reach the app: ${err.reason.slice(UNREACHABLE.length)}`;
  }
  return errorMessage(err);
}

/** Whether a join failed because the client reset its stream (its app reset or failed). */
export function peerReset(err: unknown): boolean {
  return err instanceof StreamResetError && err.remote && !err.reason.startsWith(UNREACHABLE);
}

/**
 * How a joined user's connection ended, for its log line: `why` it failed
 * (undefined for a clean close), and `how` the line says it.
 */
export function joinOutcome(error: unknown): { why: string | undefined; how: string } {
  if (peerReset(error)) {
    const why = "the app side reset or failed";
    return { why, how: `closed: ${why}` };
  }
  if (error === undefined) return { why: undefined, how: "closed" };
  // This side closed the work connection (the client left, the server is stopping):
  // the user was cut by that, and nothing failed.
  if (error instanceof MuxClosedError) {
    return { why: "its tunnel closed", how: "closed with its tunnel" };
  }
  const why = describeWorkError(error);
  return { why, how: `failed (${why})` };
}
