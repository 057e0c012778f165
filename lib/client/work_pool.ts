/**
 * The client's side of work connections: it keeps `poolSize` of them open
 * and idle (pinging each now and then, so NAT gateways keep their mapping),
 * opens extra ones when the server asks, and serves the user each one is
 * given: dial the local app, answer `started` (or `start_failed`), and join
 * the two.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatHostPort } from "../util/addr.ts";
import { errorMessage } from "../util/errors.ts";
import type { Secret } from "../util/secret.ts";
import { prove } from "../util/secret.ts";
import { type BufferPool, LiveJoins } from "../tunnel/join.ts";
import { closeQuietly, dial, netReason } from "../transport/net.ts";
import type { Conn, Dialer } from "../transport/transport.ts";
import {
  type ClientMessage,
  type FrameReader,
  type FrameWriter,
  parseStart,
  PROTOCOL_VERSION,
  writeAll,
} from "../protocol/protocol.ts";
import { encodeProxyHeader } from "../tunnel/proxy_protocol.ts";
import { open } from "./connect.ts";
import type { WantedApp } from "./tunnel.ts";

/** How long dialling the server or a local app may take (the server waits 10 s for `started`). */
export const DIAL_TIMEOUT_MS = 10_000;

/** What the pool needs from its session. */
export interface WorkPoolOptions {
  dialer: Dialer;
  token: Secret;
  group: string;
  /** The session whose work connections these are. */
  session: string;
  heartbeatIntervalMs: number;
  poolSize: number;
  apps: Map<string, WantedApp>;
  buffers: BufferPool;
  log: Logger;
  /** Tells the server that join `id` failed here. */
  abortPeer(id: number): void;
}

/** The work connections of one client session. */
export class ClientWorkPool {
  #o: WorkPoolOptions;
  #idle = new Set<Conn>();
  /** Idle or opening connections that belong to the pool (not extras asked for by the server). */
  #pooled = 0;
  #active = new Set<Conn>();
  /** Joins in progress by work id, so an `abort` from the server can end one. */
  readonly joins = new LiveJoins();
  #closed = false;

  constructor(options: WorkPoolOptions) {
    this.#o = options;
  }

  /** Keeps `poolSize` idle work connections open or on their way. */
  fill(): void {
    while (!this.#closed && this.#pooled < this.#o.poolSize) this.open(true);
  }

  /** Stops: idle connections close now (active ones with {@linkcode closeActive}). */
  close(): void {
    this.#closed = true;
    for (const conn of this.#idle) closeQuietly(conn);
  }

  /** Closes the connections that are serving users. */
  closeActive(): void {
    for (const conn of this.#active) closeQuietly(conn);
  }

  /** Opens one work connection and serves the user it is given. */
  async open(pooled: boolean): Promise<void> {
    if (this.#closed) return;
    if (pooled) this.#pooled++;
    // Leaving the pool (used, lost or never opened) makes room for a new pooled
    // connection; any connection being used is the moment to top the pool up.
    const leave = (used: boolean) => {
      if (pooled) this.#pooled--;
      if (used) this.fill();
    };
    let conn: Conn;
    let reader: FrameReader;
    let writer: FrameWriter<ClientMessage>;
    try {
      ({ conn, reader, writer } = await this.#hello());
    } catch (err) {
      leave(false);
      this.#o.log.debug(`work connection failed: ${errorMessage(err)}`);
      return;
    }
    if (this.#closed) {
      leave(false);
      return closeQuietly(conn);
    }
    this.#idle.add(conn);
    // An idle connection carries nothing, and NAT gateways forget flows idle
    // for a few minutes; a ping now and then keeps its mapping alive.
    const keepalive = setInterval(
      () => writer.send({ type: "ping", seq: 0 }).catch(() => {}),
      this.#o.heartbeatIntervalMs,
    );
    let start: unknown;
    try {
      start = await reader.read();
    } catch (err) {
      if (!this.#closed) this.#o.log.debug(`idle work connection failed: ${errorMessage(err)}`);
      start = null;
    } finally {
      clearInterval(keepalive);
    }
    this.#idle.delete(conn);
    leave(start !== null);
    if (start === null) return closeQuietly(conn);
    await this.#serve(conn, reader, writer, start);
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
      return opened;
    } catch (err) {
      closeQuietly(opened.conn);
      throw err;
    }
  }

  async #serve(
    conn: Conn,
    reader: FrameReader,
    writer: FrameWriter<ClientMessage>,
    raw: unknown,
  ): Promise<void> {
    this.#active.add(conn);
    try {
      const msg = parseStart(raw);
      const app = this.#o.apps.get(msg.app);
      if (!app) {
        await writer.send({ type: "start_failed", message: `no app named ${msg.app}` });
        return;
      }
      if (app.inspector) {
        // The inspector reads the requests and dials the app for each one.
        await writer.send({ type: "started" });
        const stats = app.traffic.open();
        await app.inspector.handle(conn, app, reader.takeBuffered())
          .finally(() => app.traffic.close(stats));
        return;
      }
      let local: Deno.TcpConn;
      try {
        local = await dial(app.local, DIAL_TIMEOUT_MS);
      } catch (err) {
        const why = `cannot reach ${formatHostPort(app.local)}: ${netReason(err)}`;
        this.#o.log.warn(`${this.#o.group}/${app.name}: user ${msg.user} turned away: ${why}`);
        await writer.send({ type: "start_failed", message: why }).catch(() => {});
        return;
      }
      try {
        // The header goes first, so no user byte can come before it.
        if (app.proxyProtocol) await writeAll(local, encodeProxyHeader(app.proxyProtocol, msg));
        await writer.send({ type: "started" });
      } catch (err) {
        closeQuietly(local);
        throw err;
      }
      // If the app resets or fails, tell the server, whose end of the work
      // connection would otherwise read our FIN as a mere half-close.
      const stats = app.traffic.open();
      const result = await this.joins.run(msg.id, conn, local, {
        aToBFirst: reader.takeBuffered(),
        stats,
        pool: this.#o.buffers,
      }, () => this.#o.abortPeer(msg.id))
        .finally(() => app.traffic.close(stats));
      const how = result.aborted
        ? "aborted by the user side"
        : result.error
        ? `failed (${errorMessage(result.error)})`
        : "done";
      this.#o.log.debug(
        `${this.#o.group}/${app.name}: user ${msg.user} ${how}: ${result.aToB} bytes in, ${result.bToA} out`,
      );
    } catch (err) {
      this.#o.log.debug(`work connection failed: ${errorMessage(err)}`);
    } finally {
      this.#active.delete(conn);
      closeQuietly(conn);
    }
  }
}
