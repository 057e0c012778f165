/**
 * One client's control session on the server: it owns a group, exposes that
 * group's apps on public ports, hands users to the client's work
 * connections, and watches the heartbeat. When it ends, for whatever reason,
 * its ports close and are free again.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatHostPort, type PortRange } from "../util/addr.ts";
import { type Cidr, inRanges, parseCidr } from "../util/cidr.ts";
import type { ServerLimits } from "../config/limits.ts";
import type { Secret } from "../util/secret.ts";
import type { Quota } from "./users.ts";
import { errorMessage, ProtocolError } from "../util/errors.ts";
import { type BufferPool, type JoinStats, LiveJoins } from "../tunnel/join.ts";
import { acceptLoop, closeQuietly, netReason, peer } from "../transport/net.ts";
import {
  type ClientMessage,
  encodeFrame,
  type FrameReader,
  type FrameWriter,
  MAX_FREE_RANGES,
  parseClientMessage,
  type ServerMessage,
  withDeadline,
  WORK_TIMEOUT_MS,
  writeAll,
} from "../protocol/protocol.ts";
import { consult, observe, type ServerHooks } from "./hooks.ts";
import type { ServerMonitor, TurnedAwayCause } from "../dashboard/monitor.ts";
import { type AppEntry, type Registry, WorkPool } from "./registry.ts";
import type { WireRefusalCode } from "../util/errors.ts";

/** A work connection that proved it belongs to a session and waits for a user. */
export interface WorkConn {
  conn: Deno.Conn;
  reader: FrameReader;
  writer: FrameWriter;
  /** The client's answer to `start` (null: it closed), read from the moment it was pooled. */
  answer?: Promise<unknown>;
}

/** Live figures of one exposed app. */
export interface AppStats {
  connections: number;
  total: number;
  bytesIn: number;
  bytesOut: number;
  live: Set<JoinStats>;
}

/** What a session needs from the server that runs it. */
export interface SessionContext {
  registry: Registry<ServerSession>;
  publicHost: string;
  heartbeatTimeoutMs: number;
  buffers: BufferPool;
  log: Logger;
  hooks: ServerHooks;
  /** Counts and records what happens, for the dashboard and metrics. */
  monitor: ServerMonitor;
  /** The server's limits against floods. */
  limits: ServerLimits;
  /** Users waiting for a work connection, across every session. */
  pending: { count: number };
  /** Logs a warning at most now and then (a limit hit under a flood). */
  rare(kind: string, message: string): void;
  ended(session: ServerSession): void;
}

/** Most idle work connections kept per session; surplus ones are closed. */
const MAX_IDLE_WORK = 64;

interface PublicApp {
  entry: AppEntry;
  listener: Deno.TcpListener;
  stats: AppStats;
  users: Set<Deno.TcpConn>;
  /** The accept loop; it ends (and the port is really free) after the listener closes. */
  serving: Promise<void>;
  limits: TunnelLimits;
  /** Fires when `limits.maxServeSeconds` runs out. */
  expiry?: ReturnType<typeof setTimeout>;
  /** Called when the last user leaves (a retired app waits for that). */
  drained: Array<() => void>;
  /** Only users from these ranges are served (`allow_from`); undefined: everyone. */
  allowFrom?: Cidr[];
}

/** Per-tunnel limits, as the client asked for them. */
type TunnelLimits = NonNullable<Extract<ClientMessage, { type: "expose" }>["limits"]>;

/** The request id of a frame that claims to be an `expose` (so a refusal can answer it). */
function exposeId(raw: unknown): number | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  const { type, id } = raw as { type?: unknown; id?: unknown };
  const usable = type === "expose" && typeof id === "number" && Number.isSafeInteger(id) && id >= 0;
  return usable ? id : undefined;
}

/** The `free_ports` answer: the first MAX_FREE_RANGES free ranges, saying if more were left out. */
export function freePortsAnswer<S>(
  registry: Registry<S>,
  id: number,
  within?: readonly PortRange[],
): ServerMessage {
  const ranges = registry.freeRanges(within);
  return {
    type: "free_ports",
    id,
    ranges: ranges.slice(0, MAX_FREE_RANGES),
    truncated: ranges.length > MAX_FREE_RANGES,
  };
}

/** A control session: one group, from one client process. */
export class ServerSession {
  readonly id: string;
  readonly group: string;
  readonly runId: string;
  readonly clientAddr: string;
  readonly clientVersion: string;
  readonly since = new Date();
  readonly apps = new Map<string, PublicApp>();
  /** The secret this group proved it knows; its work connections prove it too. */
  readonly token: Secret;
  /** What the group's entry in the users file allows; replaced on reload. */
  quota: Quota | undefined;
  #ctx: SessionContext;
  #conn: Deno.Conn;
  #reader: FrameReader;
  #writer: FrameWriter;
  #pool = new WorkPool<WorkConn>();
  #lastSeen = Date.now();
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #pings = new Map<number, () => void>();
  #seq = 0;
  #workSeq = 0;
  /** Apps closed by a limit whose users are still being served. */
  #retiring = new Set<PublicApp>();
  /** Joins in progress by work id, so an `abort` from the client can end one. */
  #joins = new LiveJoins();
  #ended = false;
  #done: Promise<void>;
  #resolveDone!: () => void;

  constructor(
    ctx: SessionContext,
    init: {
      id: string;
      group: string;
      runId: string;
      clientVersion: string;
      conn: Deno.Conn;
      reader: FrameReader;
      writer: FrameWriter;
      token: Secret;
      quota?: Quota;
    },
  ) {
    this.token = init.token;
    this.quota = init.quota;
    this.#ctx = ctx;
    this.id = init.id;
    this.group = init.group;
    this.runId = init.runId;
    this.clientVersion = init.clientVersion;
    this.#conn = init.conn;
    this.#reader = init.reader;
    this.#writer = init.writer;
    this.clientAddr = peer(init.conn);
    this.#done = new Promise((resolve) => this.#resolveDone = resolve);
  }

  /** Resolves once the session has ended and released everything. */
  get done(): Promise<void> {
    return this.#done;
  }

  /** Sends `welcome` and serves the control connection until the session ends. */
  async run(): Promise<void> {
    const timeoutMs = this.#ctx.heartbeatTimeoutMs;
    await this.#send({ type: "welcome", session: this.id, heartbeatTimeout: timeoutMs / 1000 });
    this.#watchdog = setInterval(() => {
      const silent = Date.now() - this.#lastSeen;
      if (silent > timeoutMs) this.end(`silent for ${Math.round(silent / 1000)}s`);
    }, Math.max(50, Math.min(1000, timeoutMs / 4)));
    let reason = "client closed the connection";
    try {
      while (!this.#ended) {
        const raw = await this.#reader.read();
        if (raw === null) break;
        this.#lastSeen = Date.now();
        let msg: ClientMessage;
        try {
          msg = parseClientMessage(raw);
        } catch (err) {
          const id = exposeId(raw);
          if (id === undefined) throw err;
          // A malformed request is refused on its own; the session and its other apps carry on.
          this.#ctx.log.info(`refused a malformed expose from group ${this.group}`);
          this.#ctx.monitor.refused("bad_request", "malformed expose request", {
            addr: this.clientAddr,
            group: this.group,
          });
          await this.#send({
            type: "refused",
            id,
            code: "bad_request",
            message: "malformed expose request",
          });
          continue;
        }
        await this.#handle(msg);
      }
    } catch (err) {
      reason = err instanceof ProtocolError ? errorMessage(err) : netReason(err);
    }
    this.end(reason);
  }

  /** Hands a proven work connection to a waiting user or the idle pool. */
  addWork(work: WorkConn): void {
    if (this.#pool.idle >= MAX_IDLE_WORK) return closeQuietly(work.conn);
    work.answer = this.#watch(work);
    work.answer.catch(() => {}); // failing while idle is handled by #watch; a user awaits it otherwise
    if (!this.#pool.offer(work)) closeQuietly(work.conn);
  }

  /**
   * Reads a work connection from the moment it is pooled. While idle the
   * client sends keepalive pings (they keep NAT mappings alive) and nothing
   * else; an idle connection that closes or misbehaves leaves the pool, so no
   * user is ever handed a dead one. Resolves to the first other frame, the
   * answer to `start`, or null if the client closed the connection.
   */
  async #watch(work: WorkConn): Promise<unknown> {
    try {
      while (true) {
        const raw = await work.reader.read();
        if (raw !== null && parseClientMessage(raw).type === "ping") continue;
        if (raw === null && this.#pool.remove(work)) closeQuietly(work.conn);
        return raw;
      }
    } catch (err) {
      if (this.#pool.remove(work)) closeQuietly(work.conn);
      throw err;
    }
  }

  /**
   * Pings the client and resolves true if it answers within `timeoutMs`.
   * Used before a different process may take this group over.
   */
  probe(timeoutMs: number): Promise<boolean> {
    if (this.#ended) return Promise.resolve(false);
    const seq = ++this.#seq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pings.delete(seq);
        resolve(false);
      }, timeoutMs);
      this.#pings.set(seq, () => {
        clearTimeout(timer);
        resolve(true);
      });
      this.#send({ type: "ping", seq }).catch(() => {});
    });
  }

  /** Tells the client why (if it can still hear) and releases everything. */
  end(reason: string, notice?: ServerMessage): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#ctx.monitor.groupOffline(this, reason);
    clearInterval(this.#watchdog);
    const freed = this.#ctx.registry.removeGroup(this.group, this).map((a) => a.port);
    const closing = [...this.apps.values(), ...this.#retiring].map((app) => this.#closeApp(app));
    this.#retiring.clear();
    this.apps.clear();
    for (const work of this.#pool.close()) closeQuietly(work.conn);
    const closeConn = () => closeQuietly(this.#conn);
    if (notice) this.#send(notice).then(closeConn, closeConn);
    else closeConn();
    const ports = freed.length > 0
      ? `; freed port${freed.length > 1 ? "s" : ""} ${freed.join(", ")}`
      : "";
    this.#ctx.log.info(`group ${this.group} from ${this.clientAddr} ended: ${reason}${ports}`);
    this.#ctx.ended(this);
    Promise.all(closing).then(() => this.#resolveDone());
  }

  /** Live figures per app, for `services()`. */
  stats(): Array<{ entry: AppEntry; stats: AppStats }> {
    return [...this.apps.values()].map((a) => ({ entry: a.entry, stats: a.stats }));
  }

  #send(message: ServerMessage): Promise<void> {
    return this.#writer.send(message);
  }

  #handle(msg: ClientMessage): Promise<void> {
    switch (msg.type) {
      case "ping":
        return this.#send({ type: "pong", seq: msg.seq });
      case "pong":
        this.#pings.get(msg.seq)?.();
        this.#pings.delete(msg.seq);
        return Promise.resolve();
      case "expose":
        return this.#expose(msg);
      case "unexpose":
        return this.#unexpose(msg.id, msg.app);
      case "abort":
        this.#joins.abort(msg.id);
        return Promise.resolve();
      case "free_ports":
        return this.#send(freePortsAnswer(this.#ctx.registry, msg.id, this.quota?.ports));
      case "bye":
        this.end("client stopped");
        return Promise.resolve();
      default:
        throw new ProtocolError(`unexpected ${msg.type} message on a control connection`);
    }
  }

  /** Closes an app; answers once its port is really free, so it can be claimed again at once. */
  async #unexpose(id: number, name: string): Promise<void> {
    const app = this.apps.get(name);
    if (app) {
      this.#detach(app);
      await this.#closeApp(app);
      this.#ctx.log.info(`${this.group}/${name} closed; port ${app.entry.port} is free`);
    }
    return this.#send({ type: "unexposed", id, app: name });
  }

  async #expose(msg: Extract<ClientMessage, { type: "expose" }>): Promise<void> {
    const { id, app: name, port, hint, description } = msg;
    const refuse = (code: WireRefusalCode, message: string) => {
      this.#ctx.log.info(`refused ${this.group}/${name}: ${message}`);
      this.#ctx.monitor.refused(code, message, {
        addr: this.clientAddr,
        group: this.group,
        app: name,
      });
      return this.#send({ type: "refused", id, code, message });
    };
    const info = { group: this.group, app: name, port, addr: this.clientAddr };
    const forbidden = await consult("onExpose", this.#ctx.hooks.onExpose, info, this.#ctx.log);
    if (this.#ended) return;
    if (forbidden !== undefined) return refuse("forbidden", forbidden);
    if (this.apps.has(name)) {
      return refuse("app_exists", `app ${this.group}/${name} is already exposed`);
    }
    const maxApps = Math.min(this.#ctx.limits.maxAppsPerGroup, this.quota?.maxApps ?? Infinity);
    if (this.apps.size >= maxApps) {
      const why = maxApps === this.quota?.maxApps
        ? `group ${this.group} may expose at most ${maxApps} apps (its entry ${this.quota.entry} in the users file)`
        : `a group may expose at most ${maxApps} apps (limits.max_apps_per_group)`;
      return refuse("quota", why);
    }
    let allowFrom: Cidr[] | undefined;
    if (msg.allowFrom !== undefined) {
      allowFrom = [];
      for (const text of msg.allowFrom) {
        const range = parseCidr(text);
        if (typeof range === "string") return refuse("bad_request", `allow_from: ${range}`);
        allowFrom.push(range);
      }
    }
    const candidates = this.#ctx.registry.candidates(port, hint, this.quota?.ports);
    if (!Array.isArray(candidates)) return refuse(candidates.code, candidates.message);
    for (const candidate of candidates) {
      let listener: Deno.TcpListener;
      try {
        listener = Deno.listen({
          hostname: this.#ctx.publicHost,
          port: candidate,
          transport: "tcp",
        });
      } catch (err) {
        if (!(err instanceof Deno.errors.AddrInUse)) {
          // Not a busy port but a port this server may not bind (e.g. below 1024).
          const why = `port ${candidate} cannot be bound on the server (${netReason(err)})`;
          this.#ctx.log.error(`${this.group}/${name}: ${why}`);
          if (port !== 0) return refuse("port_not_allowed", why);
          continue;
        }
        // Another program on the server host holds it; a picked port just moves on.
        if (port !== 0) {
          return refuse("port_taken", `port ${port} is in use on the server host (address in use)`);
        }
        continue;
      }
      const entry = this.#ctx.registry.claim(this.group, name, candidate, description);
      const app: PublicApp = {
        entry,
        listener,
        stats: { connections: 0, total: 0, bytesIn: 0, bytesOut: 0, live: new Set() },
        users: new Set(),
        serving: Promise.resolve(),
        limits: msg.limits ?? {},
        drained: [],
        ...(allowFrom === undefined ? {} : { allowFrom }),
      };
      app.serving = this.#serve(app);
      this.apps.set(name, app);
      const seconds = app.limits.maxServeSeconds;
      if (seconds !== undefined) {
        app.expiry = setTimeout(
          () => this.#retire(app, `served for ${seconds}s`, true),
          seconds * 1000,
        );
      }
      this.#ctx.log.info(
        `${this.group}/${name} is live on ${
          formatHostPort({ hostname: this.#ctx.publicHost, port: candidate })
        }`,
      );
      return this.#send({ type: "exposed", id, app: name, port: candidate });
    }
    return refuse("no_free_port", "no free port could be bound in the server's allowed ports");
  }

  #serve(app: PublicApp): Promise<void> {
    return acceptLoop(
      app.listener,
      (user) => this.#user(app, user),
      (reason) => this.#ctx.log.warn(`${this.group}/${app.entry.app}: accept failed: ${reason}`),
    );
  }

  async #user(app: PublicApp, user: Deno.TcpConn): Promise<void> {
    const from = peer(user);
    const turnedAway = this.#turnAway(app, user);
    if (turnedAway !== undefined) {
      this.#ctx.monitor.userTurnedAway(this.group, app.entry.app, turnedAway.cause);
      this.#ctx.log.debug(
        `turned user ${from} away from ${this.group}/${app.entry.app}: ${turnedAway.why}`,
      );
      return closeQuietly(user);
    }
    const started = Date.now();
    const info = { group: this.group, app: app.entry.app, port: app.entry.port, user: from };
    const refused = await consult(
      "onUserConnect",
      this.#ctx.hooks.onUserConnect,
      info,
      this.#ctx.log,
    );
    const { maxUsers, maxConnections } = app.limits;
    // Checked after the hook answered: meanwhile the app may have closed or
    // filled up, and other users of the group may have been let in.
    const full = this.apps.get(app.entry.app) !== app
      ? "the tunnel has closed"
      : this.#groupFull() ?? (maxUsers !== undefined && app.stats.connections >= maxUsers
        ? `the tunnel's limit of ${maxUsers} concurrent users is reached`
        : maxConnections !== undefined && app.stats.total >= maxConnections
        ? `the tunnel has served its ${maxConnections} connections`
        : undefined);
    if (refused !== undefined || full !== undefined) {
      this.#ctx.log.debug(
        `refused user ${from} on ${this.group}/${app.entry.app}: ${refused ?? full}`,
      );
      return closeQuietly(user);
    }
    user.setNoDelay(true);
    app.users.add(user);
    app.stats.connections++;
    app.stats.total++;
    if (maxConnections !== undefined && app.stats.total >= maxConnections) {
      // This user is served; nobody after it.
      this.#retire(app, `served its limit of ${maxConnections} connections`, false);
    }
    const stats: JoinStats = { aToB: 0, bToA: 0 };
    app.stats.live.add(stats);
    this.#ctx.monitor.userOpened(this.group, app.entry.app, stats);
    let error: string | undefined;
    try {
      error = await this.#serveUser(app, user, from, stats);
    } finally {
      closeQuietly(user);
      app.users.delete(user);
      if (app.users.size === 0) { for (const done of app.drained.splice(0)) done(); }
      app.stats.live.delete(stats);
      app.stats.connections--;
      app.stats.bytesIn += stats.aToB;
      app.stats.bytesOut += stats.bToA;
      this.#ctx.monitor.userClosed(this.group, app.entry.app, stats);
    }
    const closed = {
      ...info,
      bytesIn: stats.aToB,
      bytesOut: stats.bToA,
      durationMs: Date.now() - started,
    };
    observe(
      "onClose",
      this.#ctx.hooks.onClose,
      error === undefined ? closed : { ...closed, error },
      this.#ctx.log,
    );
  }

  /**
   * Why a user may not reach the client at all, checked before any byte or
   * hook: `allow_from`, the group's concurrent-connection quota, and the
   * server's cap on users waiting for a work connection.
   */
  #turnAway(
    app: PublicApp,
    user: Deno.TcpConn,
  ): { cause: TurnedAwayCause; why: string } | undefined {
    if (app.allowFrom !== undefined) {
      const { hostname } = user.remoteAddr as Deno.NetAddr;
      if (!inRanges(hostname, app.allowFrom)) {
        return { cause: "allow_from", why: "its address is not in the app's allow_from" };
      }
    }
    const full = this.#groupFull();
    if (full !== undefined) return { cause: "group_quota", why: full };
    if (this.#pool.idle === 0 && this.#ctx.pending.count >= this.#ctx.limits.maxPendingUsers) {
      const why = `${this.#ctx.limits.maxPendingUsers} users are waiting for work connections ` +
        `(limits.max_pending_users)`;
      this.#ctx.rare("max-pending", `${why}: turning new users away`);
      return { cause: "pending_limit", why };
    }
    return undefined;
  }

  /** Why the group may take no more users (its `max_connections`), or undefined. */
  #groupFull(): string | undefined {
    const max = this.quota?.maxConnections;
    if (max === undefined) return undefined;
    let open = 0;
    for (const a of [...this.apps.values(), ...this.#retiring]) open += a.stats.connections;
    return open >= max
      ? `the group has its ${max} connections open (entry ${this.quota?.entry} in the users file)`
      : undefined;
  }

  /** Joins a user to a work connection; resolves to why it failed, or undefined. */
  async #serveUser(
    app: PublicApp,
    user: Deno.TcpConn,
    from: string,
    stats: JoinStats,
  ): Promise<string | undefined> {
    const label = `${this.group}/${app.entry.app}`;
    const waitStart = performance.now();
    let work = this.#pool.takeIdle();
    if (!work) {
      this.#ctx.log.debug(`${label}: no idle work connection; asking the client for one`);
      this.#send({ type: "want_work", count: 1 }).catch(() => {});
      this.#ctx.pending.count++;
      try {
        work = await this.#pool.wait(WORK_TIMEOUT_MS);
      } finally {
        this.#ctx.pending.count--;
      }
    }
    this.#ctx.monitor.workWaited((performance.now() - waitStart) / 1000);
    if (!work) {
      const why = this.#ended
        ? "the group went offline"
        : `no work connection from the client within ${WORK_TIMEOUT_MS / 1000}s`;
      this.#ctx.log.warn(`user ${from} on ${label} closed: ${why}`);
      return why;
    }
    const id = ++this.#workSeq;
    // The start frame is written before the copy begins, so no user byte can
    // overtake it (and it is not counted as one); the client's answer then
    // leads the work-to-user direction.
    try {
      const { remoteAddr: u, localAddr: pub } = user;
      const start: ServerMessage = {
        type: "start",
        id,
        app: app.entry.app,
        user: from,
        source: { hostname: u.hostname, port: u.port },
        destination: { hostname: pub.hostname, port: pub.port },
      };
      await writeAll(work.conn, encodeFrame(start));
    } catch (err) {
      closeQuietly(work.conn);
      const why = `work connection failed (${netReason(err)})`;
      this.#ctx.log.warn(`user ${from} on ${label} closed: ${why}`);
      return why;
    }
    // A reset or failure here must end the client's side at once too: its
    // end of the work connection would only see a FIN, i.e. a half-close.
    const result = await this.#joins.run(id, user, work.conn, {
      bToAFirst: this.#started(work),
      stats,
      pool: this.#ctx.buffers,
    }, () => !this.#ended && this.#send({ type: "abort", id }).catch(() => {}));
    const why = result.aborted
      ? "the app side reset or failed"
      : result.error === undefined
      ? undefined
      : errorMessage(result.error);
    const how = result.aborted
      ? `closed: ${why}`
      : why === undefined
      ? "closed"
      : `failed (${why})`;
    this.#ctx.log.info(
      `user ${from} on ${label} ${how}: ${result.aToB} bytes in, ${result.bToA} out`,
    );
    return why;
  }

  /** Resolves to the bytes after the client's `started`, or rejects with why not. */
  async #started(work: WorkConn): Promise<Uint8Array> {
    const raw = await withDeadline(
      work.answer ?? work.reader.read(),
      WORK_TIMEOUT_MS,
      `the client did not answer on its work connection within ${WORK_TIMEOUT_MS / 1000}s`,
    );
    if (raw === null) throw new Error("the client closed the work connection");
    const reply = parseClientMessage(raw);
    if (reply.type === "start_failed") {
      throw new Error(`client could not reach the app: ${reply.message}`);
    }
    if (reply.type !== "started") {
      throw new ProtocolError(`unexpected ${reply.type} on a work connection`);
    }
    return work.reader.takeBuffered();
  }

  /** Closes an app's listener and users; resolves once its port is free again. */
  #closeApp(app: PublicApp, dropUsers = true): Promise<void> {
    clearTimeout(app.expiry);
    closeQuietly(app.listener);
    if (dropUsers) { for (const user of app.users) closeQuietly(user); }
    return app.serving;
  }

  /** Takes an app out of this session and frees its port in the registry. */
  #detach(app: PublicApp): void {
    this.apps.delete(app.entry.app);
    this.#ctx.registry.release(this.group, app.entry.app);
  }

  /**
   * Closes an app the server decided to close (a limit was reached) and
   * tells the client, unasked. `dropUsers` also ends its live users.
   */
  #retire(app: PublicApp, reason: string, dropUsers: boolean): void {
    const name = app.entry.app;
    if (this.#ended || this.apps.get(name) !== app) return;
    this.#detach(app);
    const closed = this.#closeApp(app, dropUsers);
    this.#retiring.add(app);
    // The client hears of it once the users still being served are done: until
    // then it must keep answering their `start`s for this app.
    const drained = app.users.size === 0
      ? Promise.resolve()
      : new Promise<void>((resolve) => app.drained.push(resolve));
    Promise.all([closed, drained]).then(() => {
      this.#retiring.delete(app);
      this.#ctx.log.info(`${this.group}/${name} closed: ${reason}; port ${app.entry.port} is free`);
      if (!this.#ended) return this.#send({ type: "unexposed", id: 0, app: name, reason });
    }).catch(() => {});
  }
}
