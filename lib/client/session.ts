/**
 * One control connection of a client, from handshake to loss. It registers
 * the group, exposes the wanted apps (asking for the ports they had), keeps a
 * few work connections carrying mux sessions up (`work_pool.ts`), pings the server and
 * notices when it falls silent. The client's reconnect loop opens a new one
 * after each loss.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatHostPort, type HostPort } from "../util/addr.ts";
import type { WantedApp } from "./tunnel.ts";
import { errorMessage, ProtocolError, RefusedError } from "../util/errors.ts";
import type { BufferPool } from "../tunnel/join.ts";
import { closeQuietly, netReason } from "../transport/net.ts";
import type { Conn, Dialer } from "../transport/transport.ts";
import {
  type ClientMessage,
  type Expose,
  type FrameReader,
  type FrameWriter,
  HANDSHAKE_TIMEOUT_MS,
  parseHelloReply,
  parseServerControl,
  PROTOCOL_VERSION,
  type ServerControlMessage,
} from "../protocol/protocol.ts";
import { prove, type Secret } from "../util/secret.ts";
import { VERSION } from "../util/version.ts";
import { open, refusal } from "./connect.ts";
import { ClientWorkPool, DIAL_TIMEOUT_MS } from "./work_pool.ts";

/** How long a `ready` line waits for the first work connection (then it is printed anyway). */
const FIRST_WORK_WAIT_MS = 3_000;

/** Pongs a client may miss before it calls the server dead. */
const MISSED_PONGS = 3;

/** What a session needs from its client. */
export interface SessionOptions {
  server: HostPort;
  /** Dials the server over its transport. */
  dialer: Dialer;
  token: Secret;
  group: string;
  runId: string;
  /** Register as one of several clients of a shared group. */
  shared: boolean;
  heartbeatIntervalMs: number;
  poolSize: number;
  apps: Map<string, WantedApp>;
  buffers: BufferPool;
  log: Logger;
}

/** Messages that answer a request by its id. */
type Reply = Extract<
  ServerControlMessage,
  { type: "exposed" | "unexposed" | "refused" | "free_ports" }
>;

/**
 * Dials the server and registers the group. Rejects with `RefusedError` on a
 * final refusal, and with any other error when the server cannot be reached.
 */
export async function openSession(options: SessionOptions): Promise<ClientSession> {
  const { conn, reader, writer, nonce } = await open(options.dialer, DIAL_TIMEOUT_MS, true);
  try {
    const proof = await prove(options.token, nonce, "control", options.group, options.runId);
    await writer.send({
      type: "hello",
      version: PROTOCOL_VERSION,
      client: VERSION,
      group: options.group,
      runId: options.runId,
      proof,
      ...(options.shared ? { shared: true } : {}),
    });
    const reply = await reader.read(HANDSHAKE_TIMEOUT_MS + 5_000); // a takeover probe takes ~3s
    if (reply === null) throw new Error("the server closed the connection during the handshake");
    const msg = parseHelloReply(reply);
    if (msg.type === "refused") throw refusal(msg);
    return new ClientSession(options, conn, reader, writer, msg.session, msg.heartbeatTimeout);
  } catch (err) {
    closeQuietly(conn);
    throw err;
  }
}

/** A registered control connection. */
export class ClientSession {
  #o: SessionOptions;
  #conn: Conn;
  #reader: FrameReader;
  #writer: FrameWriter<ClientMessage>;
  #work: ClientWorkPool;
  #serverTimeoutS: number;
  #pending = new Map<number, { resolve: (m: Reply) => void; reject: (e: Error) => void }>();
  #exposing = new Map<string, Promise<void>>();
  #nextId = 1;
  #lastHeard = Date.now();
  #timers: Array<ReturnType<typeof setInterval>> = [];
  #endReason: string | undefined;
  #serverStopping = false;
  #loopDone: Promise<void> = Promise.resolve();
  #onReady: (app: WantedApp) => void = () => {};
  #onRefused: (app: WantedApp, err: RefusedError) => void = () => {};
  #onRetired: (app: WantedApp, reason: string) => void = () => {};

  constructor(
    options: SessionOptions,
    conn: Conn,
    reader: FrameReader,
    writer: FrameWriter<ClientMessage>,
    id: string,
    serverTimeoutS: number,
  ) {
    this.#o = options;
    this.#conn = conn;
    this.#reader = reader;
    this.#writer = writer;
    this.#serverTimeoutS = serverTimeoutS;
    this.#work = new ClientWorkPool({
      ...options,
      session: id,
      serverTimeoutMs: serverTimeoutS * 1000,
    });
  }

  /** True once the connection is lost or closed. */
  get ended(): boolean {
    return this.#endReason !== undefined;
  }

  /** True when the server ended the session because it is stopping (so go elsewhere). */
  get serverStopping(): boolean {
    return this.#serverStopping;
  }

  /**
   * Exposes every wanted app, fills the work pool, and serves the control
   * connection until it is lost. Returns why it ended; throws `RefusedError`
   * if the server ends the session with a refusal.
   */
  async run(
    onReady: (app: WantedApp) => void,
    onRefused: (app: WantedApp, err: RefusedError) => void,
    onRetired: (app: WantedApp, reason: string) => void = () => {},
  ): Promise<string> {
    this.#onReady = onReady;
    this.#onRefused = onRefused;
    this.#onRetired = onRetired;
    const intervalMs = this.#o.heartbeatIntervalMs;
    if (intervalMs * 2 > this.#serverTimeoutS * 1000) {
      this.#o.log.warn(
        `heartbeat interval ${
          intervalMs / 1000
        }s is more than half the server's timeout of ${this.#serverTimeoutS}s; the server may drop this client`,
      );
    }
    let seq = 0;
    this.#timers.push(setInterval(() => this.#send({ type: "ping", seq: ++seq }), intervalMs));
    this.#timers.push(setInterval(() => {
      const silent = Date.now() - this.#lastHeard;
      if (silent > intervalMs * MISSED_PONGS) {
        this.#end(`server silent for ${Math.round(silent / 1000)}s`);
      }
    }, Math.max(50, intervalMs / 2)));
    this.#work.fill();
    // The server handles requests in order: explicit ports are claimed first,
    // then ports apps had before, so a server-picked port never takes a port
    // that a sibling app names.
    const rank = (a: WantedApp) => a.requestedPort !== 0 ? 0 : a.port !== 0 ? 1 : 2;
    for (const app of [...this.#o.apps.values()].sort((a, b) => rank(a) - rank(b))) {
      this.expose(app).catch(() => {}); // refusals go to onRefused; losses end the session
    }
    let loopDone!: () => void;
    this.#loopDone = new Promise((resolve) => loopDone = resolve);
    try {
      while (!this.ended) {
        const raw = await this.#reader.read();
        if (raw === null) {
          this.#end("the server closed the connection");
          break;
        }
        this.#lastHeard = Date.now();
        this.#handle(parseServerControl(raw));
      }
    } catch (err) {
      if (err instanceof RefusedError) {
        this.#end(err.message);
        throw err;
      }
      this.#end(err instanceof ProtocolError ? errorMessage(err) : netReason(err));
    } finally {
      loopDone();
    }
    return this.#endReason ?? "closed";
  }

  /** Exposes one app on this session (once, however often it is asked). */
  expose(app: WantedApp): Promise<void> {
    let exposing = this.#exposing.get(app.name);
    if (!exposing) {
      const attempt = this.#exposeOnce(app);
      attempt.catch(() => {
        // A failed attempt is not remembered, so a later call may try again.
        if (this.#exposing.get(app.name) === attempt) this.#exposing.delete(app.name);
      });
      this.#exposing.set(app.name, attempt);
      exposing = attempt;
    }
    return exposing;
  }

  async #exposeOnce(app: WantedApp): Promise<void> {
    const request: Expose = app.requestedPort === 0 && app.port !== 0
      ? { type: "expose", id: this.#nextId++, app: app.name, port: 0, hint: app.port }
      : { type: "expose", id: this.#nextId++, app: app.name, port: app.requestedPort };
    if (app.description !== undefined) request.description = app.description;
    if (app.allowFrom !== undefined) request.allowFrom = app.allowFrom;
    if (app.balance !== undefined) request.balance = app.balance;
    if (app.web !== undefined) request.web = app.web;
    if (app.udp !== undefined) request.udp = app.udp;
    if (app.limits !== undefined) {
      const limits = { ...app.limits };
      // After a reconnect, ask only for the serve time that is left.
      if (app.expiresAt !== undefined) {
        limits.maxServeSeconds = Math.max(0.001, (app.expiresAt - Date.now()) / 1000);
      }
      request.limits = limits;
    }
    const reply = await this.#request(request);
    if (reply.type === "refused") {
      const err = new RefusedError(reply.code, reply.message);
      if (this.#o.apps.get(app.name) === app) this.#onRefused(app, err);
      throw err;
    }
    if (reply.type !== "exposed") throw new ProtocolError(`expected exposed, got ${reply.type}`);
    app.port = reply.port;
    // The server takes a new replica as healthy; tell it if the checks say otherwise.
    if (app.health !== undefined && !app.health.state.healthy) this.reportHealth(app);
    if (reply.urls !== undefined) app.urls = reply.urls;
    // Live once users can be served: a work connection is up (or it is late, and said so).
    await this.#work.firstUp(FIRST_WORK_WAIT_MS);
    if (this.ended) throw new Error(`connection lost: ${this.#endReason}`);
    this.#o.log.info(
      `${this.#o.group}/${app.name} is live on ${
        reply.urls?.join(" ") ?? `${app.udp === undefined ? "port" : "udp port"} ${reply.port}`
      } -> ${formatHostPort(app.local)}`,
    );
    try {
      this.#onReady(app);
    } catch (err) {
      // The host's callback (e.g. printing to a closed pipe) must not undo a live app.
      this.#o.log.warn(
        `ready callback for ${this.#o.group}/${app.name} failed: ${errorMessage(err)}`,
      );
    }
  }

  /** Tells the server what an app's health checks say now. */
  reportHealth(app: WantedApp): void {
    const state = app.health?.state;
    if (this.ended || state === undefined) return;
    this.#send({
      type: "health",
      app: app.name,
      healthy: state.healthy,
      ...(state.healthy || state.reason === undefined
        ? {}
        : { reason: state.reason.slice(0, 500) }),
    });
  }

  /** Closes one app's public port. */
  async unexpose(name: string): Promise<void> {
    this.#exposing.delete(name);
    await this.#request({ type: "unexpose", id: this.#nextId++, app: name });
  }

  /** Free public ports as ranges. */
  async freePorts(): Promise<Array<[number, number]>> {
    const reply = await this.#request({ type: "free_ports", id: this.#nextId++ });
    if (reply.type !== "free_ports") {
      throw new ProtocolError(`expected free_ports, got ${reply.type}`);
    }
    return reply.ranges;
  }

  /**
   * Says goodbye and waits (up to a second) for the server to hang up, so the
   * group and its ports are free by the time this resolves; then closes all.
   */
  async close(reason: string): Promise<void> {
    if (!this.ended) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const hungUp = this.#writer.send({ type: "bye" }).then(() => this.#loopDone, () => {});
      await Promise.race([hungUp, new Promise((resolve) => timer = setTimeout(resolve, 1000))]);
      clearTimeout(timer);
    }
    this.#end(reason);
    this.#work.closeActive();
  }

  #end(reason: string): void {
    if (this.ended) return;
    this.#endReason = reason;
    for (const t of this.#timers) clearInterval(t);
    closeQuietly(this.#conn);
    this.#work.close();
    const lost = new Error(`connection lost: ${reason}`);
    for (const p of this.#pending.values()) p.reject(lost);
    this.#pending.clear();
  }

  #send(message: ClientMessage): void {
    this.#writer.send(message).catch((err) => this.#end(netReason(err)));
  }

  #request(message: ClientMessage & { id: number }): Promise<Reply> {
    if (this.ended) return Promise.reject(new Error(`connection lost: ${this.#endReason}`));
    return new Promise((resolve, reject) => {
      this.#pending.set(message.id, { resolve, reject });
      this.#send(message);
    });
  }

  #handle(msg: ServerControlMessage): void {
    switch (msg.type) {
      case "ping":
        return this.#send({ type: "pong", seq: msg.seq });
      case "pong":
        return;
      case "shutdown":
        this.#serverStopping = true;
        return this.#end(`server is shutting down (${msg.reason})`);
      case "refused":
        if (msg.id === undefined) throw refusal(msg);
        return this.#answer(msg.id, msg);
      case "unexposed":
        if (msg.id === 0) return this.#retired(msg.app, msg.reason ?? "closed by the server");
        return this.#answer(msg.id, msg);
      case "exposed":
      case "free_ports":
        return this.#answer(msg.id, msg);
    }
  }

  /** The server closed an app by itself (a limit was reached): it is not to be exposed again. */
  #retired(name: string, reason: string): void {
    this.#exposing.delete(name);
    const app = this.#o.apps.get(name);
    if (app) this.#onRetired(app, reason);
  }

  #answer(id: number, reply: Reply): void {
    const pending = this.#pending.get(id);
    this.#pending.delete(id);
    pending?.resolve(reply);
  }
}
