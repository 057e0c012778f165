/**
 * One control connection of a client, from handshake to loss. It registers
 * the group, exposes the wanted apps (asking for the ports they had), keeps a
 * pool of idle work connections ready, pings the server and notices when it
 * falls silent. The client's reconnect loop opens a new one after each loss.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatHostPort, type HostPort } from "../util/addr.ts";
import type { WantedApp } from "./tunnel.ts";
import { errorMessage, ProtocolError, RefusedError } from "../util/errors.ts";
import { type BufferPool, LiveJoins } from "../tunnel/join.ts";
import { closeQuietly, dial, netReason } from "../transport/net.ts";
import type { ServerLink } from "../transport/server_link.ts";
import {
  type ClientMessage,
  FrameReader,
  FrameWriter,
  HANDSHAKE_TIMEOUT_MS,
  parseServerMessage,
  PROTOCOL_VERSION,
  type ServerMessage,
  TlsRecordError,
  versionMismatch,
  WORK_TIMEOUT_MS,
  writeAll,
} from "../protocol/protocol.ts";
import { prove, type Secret } from "../util/secret.ts";
import { VERSION } from "../util/version.ts";
import { encodeProxyHeader } from "../tunnel/proxy_protocol.ts";

/** Pongs a client may miss before it calls the server dead. */
const MISSED_PONGS = 3;
/** How long dialling the server or a local app may take. */
const DIAL_TIMEOUT_MS = 10_000;

/** What a session needs from its client. */
export interface SessionOptions {
  server: HostPort;
  /** Dials the server and secures the connection. */
  link: ServerLink;
  token: Secret;
  group: string;
  runId: string;
  heartbeatIntervalMs: number;
  poolSize: number;
  apps: Map<string, WantedApp>;
  buffers: BufferPool;
  log: Logger;
}

/** Messages that answer a request by its id. */
type Reply = Extract<ServerMessage, { type: "exposed" | "unexposed" | "refused" | "free_ports" }>;

/**
 * Dials the server and registers the group. Rejects with `RefusedError` on a
 * final refusal, and with any other error when the server cannot be reached.
 */
export async function openSession(options: SessionOptions): Promise<ClientSession> {
  const conn = await options.link.establish(DIAL_TIMEOUT_MS);
  try {
    const reader = new FrameReader(conn);
    const writer = new FrameWriter(conn);
    const nonce = await readChallenge(reader);
    const proof = await prove(options.token, nonce, "control", options.group, options.runId);
    await writer.send({
      type: "hello",
      version: PROTOCOL_VERSION,
      client: VERSION,
      group: options.group,
      runId: options.runId,
      proof,
    });
    const reply = await reader.read(HANDSHAKE_TIMEOUT_MS + 5_000); // a takeover probe takes ~3s
    if (reply === null) throw new Error("the server closed the connection during the handshake");
    const msg = parseServerMessage(reply);
    if (msg.type === "refused") throw refusal(msg);
    if (msg.type !== "welcome") throw new ProtocolError(`expected welcome, got ${msg.type}`);
    return new ClientSession(options, conn, reader, writer, msg.session, msg.heartbeatTimeout);
  } catch (err) {
    closeQuietly(conn);
    throw err;
  }
}

/** Reads the server's challenge, checking the protocol version first. */
export async function readChallenge(reader: FrameReader): Promise<string> {
  let raw: unknown;
  try {
    raw = await reader.read(HANDSHAKE_TIMEOUT_MS);
  } catch (err) {
    if (!(err instanceof TlsRecordError)) throw err;
    throw new RefusedError(
      "tls_mismatch",
      "the server speaks TLS but this client has tls: false; remove tls: false (TLS is the default)",
    );
  }
  if (raw === null) throw new Error("the server closed the connection before the handshake");
  const msg = parseServerMessage(raw);
  if (msg.type === "refused") throw refusal(msg);
  if (msg.type !== "challenge") throw new ProtocolError(`expected challenge, got ${msg.type}`);
  if (msg.version !== PROTOCOL_VERSION) {
    throw new RefusedError("version_mismatch", versionMismatch(PROTOCOL_VERSION, msg.version));
  }
  return msg.nonce;
}

/** A refusal as an error: final ones as `RefusedError`, a closing server as a plain one. */
export function refusal(msg: Extract<ServerMessage, { type: "refused" }>): Error {
  if (msg.code === "server_closing") return new Error(msg.message);
  return new RefusedError(msg.code, msg.message);
}

/** A registered control connection. */
export class ClientSession {
  #o: SessionOptions;
  #conn: Deno.Conn;
  #reader: FrameReader;
  #writer: FrameWriter;
  #id: string;
  #serverTimeoutS: number;
  #pending = new Map<number, { resolve: (m: Reply) => void; reject: (e: Error) => void }>();
  #exposing = new Map<string, Promise<void>>();
  #nextId = 1;
  #lastHeard = Date.now();
  #timers: Array<ReturnType<typeof setInterval>> = [];
  #idleWork = new Set<Deno.Conn>();
  /** Idle or opening work connections that belong to the pool (not extras asked for by the server). */
  #pooled = 0;
  #activeWork = new Set<Deno.Conn>();
  /** Joins in progress by work id, so an `abort` from the server can end one. */
  #joins = new LiveJoins();
  #endReason: string | undefined;
  #loopDone: Promise<void> = Promise.resolve();
  #onReady: (app: WantedApp) => void = () => {};
  #onRefused: (app: WantedApp, err: RefusedError) => void = () => {};
  #onRetired: (app: WantedApp, reason: string) => void = () => {};

  constructor(
    options: SessionOptions,
    conn: Deno.Conn,
    reader: FrameReader,
    writer: FrameWriter,
    id: string,
    serverTimeoutS: number,
  ) {
    this.#o = options;
    this.#conn = conn;
    this.#reader = reader;
    this.#writer = writer;
    this.#id = id;
    this.#serverTimeoutS = serverTimeoutS;
  }

  /** True once the connection is lost or closed. */
  get ended(): boolean {
    return this.#endReason !== undefined;
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
    this.#fillPool();
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
        this.#handle(parseServerMessage(raw));
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
    const request: Extract<ClientMessage, { type: "expose" }> =
      app.requestedPort === 0 && app.port !== 0
        ? { type: "expose", id: this.#nextId++, app: app.name, port: 0, hint: app.port }
        : { type: "expose", id: this.#nextId++, app: app.name, port: app.requestedPort };
    if (app.description !== undefined) request.description = app.description;
    if (app.allowFrom !== undefined) request.allowFrom = app.allowFrom;
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
    this.#o.log.info(
      `${this.#o.group}/${app.name} is live on port ${reply.port} -> ${formatHostPort(app.local)}`,
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
    for (const conn of this.#activeWork) closeQuietly(conn);
  }

  #end(reason: string): void {
    if (this.ended) return;
    this.#endReason = reason;
    for (const t of this.#timers) clearInterval(t);
    closeQuietly(this.#conn);
    for (const conn of this.#idleWork) closeQuietly(conn);
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

  #handle(msg: ServerMessage): void {
    switch (msg.type) {
      case "ping":
        return this.#send({ type: "pong", seq: msg.seq });
      case "pong":
        return;
      case "abort":
        return this.#joins.abort(msg.id);
      case "want_work":
        for (let i = 0; i < msg.count; i++) this.#openWork(false);
        return;
      case "shutdown":
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
      default:
        throw new ProtocolError(`unexpected ${msg.type} message on the control connection`);
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

  /** Keeps `poolSize` idle work connections open or on their way. */
  #fillPool(): void {
    while (!this.ended && this.#pooled < this.#o.poolSize) {
      this.#openWork(true);
    }
  }

  /** Opens one work connection and serves the user it is given. */
  async #openWork(pooled: boolean): Promise<void> {
    if (this.ended) return;
    if (pooled) this.#pooled++;
    // Leaving the pool (used, lost or never opened) makes room for a new pooled
    // connection; any connection being used is the moment to top the pool up.
    const leave = (used: boolean) => {
      if (pooled) this.#pooled--;
      if (used) this.#fillPool();
    };
    let conn: Deno.Conn;
    let reader: FrameReader;
    let writer: FrameWriter;
    try {
      conn = await this.#o.link.connect(DIAL_TIMEOUT_MS);
      reader = new FrameReader(conn);
      writer = new FrameWriter(conn);
      const nonce = await readChallenge(reader);
      const proof = await prove(this.#o.token, nonce, "work", this.#id);
      await writer.send({
        type: "work_hello",
        version: PROTOCOL_VERSION,
        session: this.#id,
        proof,
      });
    } catch (err) {
      leave(false);
      this.#o.log.debug(`work connection failed: ${errorMessage(err)}`);
      return;
    }
    if (this.ended) {
      leave(false);
      return closeQuietly(conn);
    }
    this.#idleWork.add(conn);
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
      if (!this.ended) this.#o.log.debug(`idle work connection failed: ${errorMessage(err)}`);
      start = null;
    } finally {
      clearInterval(keepalive);
    }
    this.#idleWork.delete(conn);
    leave(start !== null);
    if (start === null) return closeQuietly(conn);
    await this.#serveWork(conn, reader, writer, start);
  }

  async #serveWork(
    conn: Deno.Conn,
    reader: FrameReader,
    writer: FrameWriter,
    raw: unknown,
  ): Promise<void> {
    this.#activeWork.add(conn);
    try {
      const msg = parseServerMessage(raw);
      if (msg.type !== "start") throw new ProtocolError(`expected start, got ${msg.type}`);
      const app = this.#o.apps.get(msg.app);
      if (!app) {
        await writer.send({ type: "start_failed", message: `no app named ${msg.app}` });
        return;
      }
      let local: Deno.TcpConn;
      try {
        local = await dial(app.local, WORK_TIMEOUT_MS);
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
      const result = await this.#joins.run(msg.id, conn, local, {
        aToBFirst: reader.takeBuffered(),
        stats,
        pool: this.#o.buffers,
      }, () => !this.ended && this.#send({ type: "abort", id: msg.id }))
        .finally(() => app.traffic.close(stats));
      const how = result.aborted ? "aborted by the user side" : result.error ? "failed" : "done";
      this.#o.log.debug(
        `${this.#o.group}/${app.name}: user ${msg.user} ${how}: ${result.aToB} bytes in, ${result.bToA} out`,
      );
    } catch (err) {
      this.#o.log.debug(`work connection failed: ${errorMessage(err)}`);
    } finally {
      this.#activeWork.delete(conn);
      closeQuietly(conn);
    }
  }
}
