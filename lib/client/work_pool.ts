/**
 * The client's side of work streams (see `lib/server/work_conn.ts` for the
 * design): it keeps `connections` work connections to the server (2 by
 * default, at most 4), each opened with `work_hello` (the session's proof)
 * and then carrying a mux session, redialled with a backoff when one fails.
 * Each stream the server opens is one user: its header is the `start`
 * message; the client dials the local app, writes a PROXY protocol header
 * there first if the app wants one, answers one byte (it reached the app),
 * and joins the two. If it cannot reach
 * the app it resets the stream with the reason, so the server closes the
 * user at once. The mux session's keepalive pings keep NAT mappings alive.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatHostPort } from "../util/addr.ts";
import { errorMessage } from "../util/errors.ts";
import type { Secret } from "../util/secret.ts";
import { prove } from "../util/secret.ts";
import { type BufferPool, join } from "../tunnel/join.ts";
import { closeQuietly, dial, netReason } from "../transport/net.ts";
import type { Dialer } from "../transport/transport.ts";
import {
  MuxPool,
  type MuxSession,
  type MuxStream,
  PrefixedConn,
  StreamResetError,
} from "../transport/mux/mod.ts";
import {
  LAZY_ANSWER_MS,
  parseWorkHeader,
  PROTOCOL_VERSION,
  type WorkHeader,
  writeAll,
} from "../protocol/protocol.ts";
import { encodeProxyHeader } from "../tunnel/proxy_protocol.ts";
import { open } from "./connect.ts";
import type { WantedApp } from "./tunnel.ts";
import { ClientUdpFlows } from "./udp_flows.ts";

/** How long dialling the server or a local app may take. */
export const DIAL_TIMEOUT_MS = 10_000;
/** Most work connections a client keeps per session. */
export const MAX_WORK_CONNECTIONS = 4;
/** The prefix of a reset reason that says the local app could not be reached (the server's too). */
const UNREACHABLE = "unreachable: ";

/** What the work connections need from their session. */
export interface WorkPoolOptions {
  dialer: Dialer;
  token: Secret;
  group: string;
  /** The session whose work connections these are. */
  session: string;
  heartbeatIntervalMs: number;
  /** The server's heartbeat timeout: a work connection silent this long is dead. */
  serverTimeoutMs: number;
  /** Work connections to keep (clamped to 1..MAX_WORK_CONNECTIONS). */
  poolSize: number;
  apps: Map<string, WantedApp>;
  buffers: BufferPool;
  log: Logger;
}

const decoder = new TextDecoder();
/** The first byte on a stream: the app was reached (the server's `STARTED`). */
const STARTED = new Uint8Array([0]);

/** The work connections of one client session. */
export class ClientWorkPool {
  #o: WorkPoolOptions;
  #pool: MuxPool | undefined;
  #active = new Set<{ close(): void }>();
  #closed = false;
  #up = false;
  #upWaiters = new Set<() => void>();
  #udp: ClientUdpFlows;

  constructor(options: WorkPoolOptions) {
    this.#o = options;
    this.#udp = new ClientUdpFlows(options.log, options.group);
  }

  /** Starts keeping the work connections up. */
  fill(): void {
    if (this.#closed || this.#pool) return;
    const size = Math.max(1, Math.min(MAX_WORK_CONNECTIONS, Math.round(this.#o.poolSize)));
    this.#pool = new MuxPool({
      size,
      dial: () => this.#hello(),
      session: {
        keepaliveMs: Math.round(this.#o.heartbeatIntervalMs),
        timeoutMs: Math.round(Math.max(this.#o.serverTimeoutMs, this.#o.heartbeatIntervalMs * 3)),
        names: { client: "burrow", server: "burrow-server" },
      },
      backoff: { initialMs: 100, maxMs: 5_000 },
      onSession: (session) => this.#accept(session),
      onEvent: (event) => {
        if (event.kind === "up") this.#markUp();
        if (event.kind === "down" && event.reason.kind === "failed" && !this.#closed) {
          this.#o.log.debug(`work connection ${event.slot} lost: ${event.reason.error.message}`);
        } else if (event.kind === "dial_failed" && !this.#closed) {
          this.#o.log.debug(`work connection failed: ${errorMessage(event.error)}`);
        }
      },
    });
  }

  /**
   * Resolves once a work connection is up (at once if one has been), or
   * after `timeoutMs` whatever happened, so a `ready` line means a user can
   * be served at once rather than after the first dial.
   */
  firstUp(timeoutMs: number): Promise<void> {
    if (this.#up || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#upWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#upWaiters.add(done);
    });
  }

  #markUp(): void {
    this.#up = true;
    for (const wake of [...this.#upWaiters]) wake();
  }

  /** Stops: the work connections close, and with them every stream on them. */
  close(): void {
    this.#closed = true;
    for (const wake of [...this.#upWaiters]) wake();
    this.#pool?.close().catch(() => {});
  }

  /** Closes the users being served (their local connections and streams). */
  closeActive(): void {
    for (const c of this.#active) closeQuietly(c);
  }

  async #hello() {
    const opened = await open(this.#o.dialer, DIAL_TIMEOUT_MS);
    try {
      const proof = await prove(this.#o.token, opened.nonce, "work", this.#o.session);
      await opened.writer.send({
        type: "work_hello",
        version: PROTOCOL_VERSION,
        session: this.#o.session,
        proof,
      });
      return new PrefixedConn(opened.conn, opened.reader.takeBuffered());
    } catch (err) {
      closeQuietly(opened.conn);
      throw err;
    }
  }

  async #accept(session: MuxSession): Promise<void> {
    this.#udp.pump(session).catch(() => {});
    try {
      for await (const stream of session.incoming()) this.#serve(stream, session);
    } catch {
      // the session ended: the pool reports it and dials again
    }
  }

  async #serve(stream: MuxStream, session: MuxSession): Promise<void> {
    let msg: WorkHeader;
    try {
      msg = parseWorkHeader(JSON.parse(decoder.decode(stream.header)));
    } catch (err) {
      this.#o.log.debug(`bad stream header from the server: ${errorMessage(err)}`);
      return stream.reset("bad header");
    }
    const app = this.#o.apps.get(msg.app);
    if (!app) return stream.reset(`${UNREACHABLE}no app named ${msg.app}`);
    if (msg.type === "udp_flow") {
      this.#active.add(stream);
      return this.#udp.serve(stream, session, msg, app).finally(() => this.#active.delete(stream));
    }
    if (app.inspector) {
      // The inspector reads the requests and dials the app for each one.
      this.#active.add(stream);
      try {
        await stream.write(STARTED);
        const stats = app.traffic.open();
        await app.inspector.handle(stream, app, new Uint8Array(0))
          .finally(() => app.traffic.close(stats));
      } catch (err) {
        this.#o.log.debug(`work stream failed: ${errorMessage(err)}`);
        stream.reset();
      } finally {
        this.#active.delete(stream);
        stream.close();
      }
      return;
    }
    this.#active.add(stream);
    let local: Deno.TcpConn | undefined;
    try {
      try {
        local = await dial(app.local, DIAL_TIMEOUT_MS);
      } catch (err) {
        const why = `cannot reach ${formatHostPort(app.local)}: ${netReason(err)}`;
        this.#o.log.warn(`${this.#o.group}/${app.name}: user ${msg.user} turned away: ${why}`);
        return stream.reset(`${UNREACHABLE}${why}`);
      }
      this.#active.add(local);
      // The header goes first, so no user byte can come before it.
      if (app.proxyProtocol) await writeAll(local, encodeProxyHeader(app.proxyProtocol, msg));
      // A failed or reset side closes the stream before its FIN: that is a
      // reset, so the server ends the user at once too.
      const stats = app.traffic.open();
      // The answer is not counted: it is not the app's.
      const lazy = msg.answer === "lazy";
      if (!lazy) await stream.write(STARTED);
      const result = await join(stream, local, {
        stats,
        pool: this.#o.buffers,
        ...(lazy ? { bToALead: { bytes: STARTED, withinMs: LAZY_ANSWER_MS } } : {}),
      })
        .finally(() => app.traffic.close(stats));
      const how = result.error instanceof StreamResetError && result.error.remote
        ? "aborted by the user side"
        : result.error
        ? `failed (${errorMessage(result.error)})`
        : "done";
      this.#o.log.debug(
        `${this.#o.group}/${app.name}: user ${msg.user} ${how}: ${result.aToB} bytes in, ${result.bToA} out`,
      );
    } catch (err) {
      this.#o.log.debug(`work stream failed: ${errorMessage(err)}`);
      stream.reset();
    } finally {
      if (local) {
        this.#active.delete(local);
        closeQuietly(local);
      }
      this.#active.delete(stream);
    }
  }
}
