/**
 * One client's control session on the server: it owns a group, exposes that
 * group's apps on public ports (`public_app.ts` serves their users), keeps
 * its work connections (`work_conn.ts`), and watches the heartbeat. When it ends, its ports close.
 *
 * @module
 */

import { formatHostPort } from "../util/addr.ts";
import { parseCidrList } from "../util/cidr.ts";
import type { Secret } from "../util/secret.ts";
import type { Quota } from "./users.ts";
import { errorMessage, ProtocolError, type WireRefusalCode } from "../util/errors.ts";
import { closeQuietly, netReason, peer } from "../transport/net.ts";
import {
  type ClientControlMessage,
  type Expose,
  parseClientControl,
  type ServerControlMessage,
  type ServerMessage,
} from "../protocol/protocol.ts";
import { consult } from "./hooks.ts";
import { freePortsAnswer } from "./answers.ts";
import { type AppSession, PublicApp } from "./public_app.ts";
import { bindPublicPort } from "./public_port.ts";
import { badExpose, replicaMismatch, replicaTypeMismatch, siblingApp } from "./shared_apps.ts";
import { MuxWork } from "./work_conn.ts";
import { clusterNames, exposeWebApp } from "./web.ts";
import type { WebApp } from "./web_app.ts";
import { SessionUdpApps, type UdpApp } from "./udp_apps.ts";

import type { ControlLink, SessionServicesOf } from "./session_services.ts";

export type { ControlLink };

/** What a session needs from the server that runs it. */
export type SessionServices = SessionServicesOf<ServerSession>;

/** A control session: one group, from one client process. */
export class ServerSession implements AppSession {
  readonly id: string;
  readonly group: string;
  readonly runId: string;
  readonly clientAddr: string;
  readonly clientVersion: string;
  /** One of several clients serving a shared group. */
  readonly shared: boolean;
  readonly since = new Date();
  readonly apps = new Map<string, PublicApp>();
  /** The web apps (http, tls) by name; a shared one is the same object in each replica's map. */
  readonly webApps = new Map<string, WebApp>();
  /** The secret this group proved it knows; its work connections prove it too. */
  readonly token: Secret;
  /** What the group's entry in the users file allows; replaced on reload. */
  quota: Quota | undefined;
  readonly work: MuxWork;
  /** The udp apps (`udp_apps.ts`). */
  readonly udp: SessionUdpApps;
  #s: SessionServices;
  #link: ControlLink;
  #onEnded: (session: ServerSession) => void;
  #lastSeen = Date.now();
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #pings = new Map<number, () => void>();
  #seq = 0;
  #workSeq = 0;
  /** Apps closed by a limit whose users are still being served. */
  #retiring = new Set<PublicApp>();
  #ended = false;
  #done: Promise<void>;
  #resolveDone!: () => void;

  constructor(
    services: SessionServices,
    init: {
      id: string;
      group: string;
      runId: string;
      clientVersion: string;
      shared?: boolean;
      link: ControlLink;
      token: Secret;
      quota?: Quota;
      /** Called once, as the session ends. */
      onEnded: (session: ServerSession) => void;
    },
  ) {
    this.#s = services;
    this.token = init.token;
    this.quota = init.quota;
    this.id = init.id;
    this.group = init.group;
    this.runId = init.runId;
    this.clientVersion = init.clientVersion;
    this.shared = init.shared ?? false;
    this.#link = init.link;
    this.#onEnded = init.onEnded;
    this.clientAddr = peer(init.link.conn);
    this.work = new MuxWork(services.pending, {
      keepaliveMs: Math.round(Math.max(1000, services.heartbeatTimeoutMs / 3)),
      timeoutMs: Math.round(services.heartbeatTimeoutMs),
    });
    this.#done = new Promise((resolve) => this.#resolveDone = resolve);
    this.udp = new SessionUdpApps(services, this);
  }

  /** Resolves once the session has ended and released everything. */
  get done(): Promise<void> {
    return this.#done;
  }

  /** True once the session has ended. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Sends `welcome` and serves the control connection until the session ends. */
  async run(): Promise<void> {
    const timeoutMs = this.#s.heartbeatTimeoutMs;
    await this.#link.writer.send({
      type: "welcome",
      session: this.id,
      heartbeatTimeout: timeoutMs / 1000,
    });
    this.#watchdog = setInterval(() => {
      const silent = Date.now() - this.#lastSeen;
      if (silent > timeoutMs) this.end(`silent for ${Math.round(silent / 1000)}s`);
    }, Math.max(50, Math.min(1000, timeoutMs / 4)));
    let reason = "client closed the connection";
    try {
      while (!this.#ended) {
        const raw = await this.#link.reader.read();
        if (raw === null) break;
        this.#lastSeen = Date.now();
        let msg: ClientControlMessage;
        try {
          msg = parseClientControl(raw);
        } catch (err) {
          const refusal = badExpose(raw);
          if (refusal === undefined) throw err;
          // A malformed request is refused on its own; the session and its other apps carry on.
          this.#s.log.info(`refused a malformed expose from group ${this.group}`);
          const where = { addr: this.clientAddr, group: this.group };
          this.#s.monitor.refused(refusal.code, refusal.message, where);
          await this.#send(refusal);
          continue;
        }
        await this.#handle(msg);
      }
    } catch (err) {
      reason = err instanceof ProtocolError ? errorMessage(err) : netReason(err);
    }
    this.end(reason);
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
    this.#s.monitor.groupOffline(this, reason);
    clearInterval(this.#watchdog);
    // A shared app goes on with its other replicas; the last one closes it.
    const last = [...this.apps.values()].filter((app) => app.removeReplica(this));
    const freed = last.flatMap((app) =>
      this.#s.registry.release(this.group, app.entry.app, app.entry)?.port ?? []
    );
    const udp = this.udp.closeAll();
    const closing = [...[...last, ...this.#retiring].map((a) => this.#closeApp(a)), udp.closed];
    freed.push(...this.#s.registry.removeGroup(this.group, this).map((a) => a.port));
    this.#retiring.clear();
    this.apps.clear();
    // A single client's names stay claimed, offline (502), until it comes back or another app
    // claims them; a shared app's go with its last replica.
    for (const app of this.webApps.values()) app.leave(this, this.#s.web, !this.shared);
    this.work.close();
    const closeConn = () => closeQuietly(this.#link.conn);
    if (notice) this.#link.writer.send(notice).then(closeConn, closeConn);
    else closeConn();
    const all = [...freed, ...udp.freed];
    const ports = all.length > 0
      ? `; freed port${all.length > 1 ? "s" : ""} ${all.join(", ")}`
      : "";
    this.#s.log.info(`group ${this.group} from ${this.clientAddr} ended: ${reason}${ports}`);
    this.#onEnded(this);
    Promise.all(closing).then(() => this.#resolveDone());
  }

  /** The apps exposed now (udp ones too), each with its traffic counter. */
  stats(): Array<PublicApp | UdpApp> {
    return [...this.apps.values(), ...this.udp.list()];
  }

  nextWorkId(): number {
    return ++this.#workSeq;
  }

  isLive(app: PublicApp): boolean {
    return this.apps.get(app.entry.app) === app;
  }

  groupFull(): string | undefined {
    const max = this.quota?.maxConnections;
    if (max === undefined) return undefined;
    let open = 0;
    for (const a of [...this.apps.values(), ...this.#retiring]) open += a.traffic.connections;
    for (const web of this.webApps.values()) open += web.inFlight; // requests in flight
    return open >= max
      ? `the group has its ${max} connections open (entry ${this.quota?.entry} in the users file)`
      : undefined;
  }

  /**
   * Lets go of an app the server decided to close (a limit was reached) and
   * tells the client, unasked; `closes` (its last replica) also closes it.
   * `dropUsers` also ends its live users.
   */
  retire(app: PublicApp, reason: string, dropUsers: boolean, closes = true): void {
    const name = app.entry.app;
    if (this.#ended || this.apps.get(name) !== app) return;
    this.apps.delete(name);
    if (closes) this.#s.registry.release(this.group, name, app.entry);
    const closed = closes ? this.#closeApp(app, dropUsers) : Promise.resolve();
    this.#retiring.add(app);
    // The client hears of it once the users still being served are done: until
    // then it must keep answering their `start`s for this app.
    Promise.all([closed, app.drained()]).then(() => {
      this.#retiring.delete(app);
      this.#s.log.info(`${this.group}/${name} closed: ${reason}; port ${app.entry.port} is free`);
      if (!this.#ended) return this.#send({ type: "unexposed", id: 0, app: name, reason });
    }).catch(() => {});
  }

  #send(message: ServerControlMessage): Promise<void> {
    return this.#link.writer.send(message);
  }

  #handle(msg: ClientControlMessage): Promise<void> {
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
      case "free_ports":
        return this.#send(freePortsAnswer(this.#s.registry, msg.id, this.quota?.ports));
      case "bye":
        this.end("client stopped");
        return Promise.resolve();
      case "health":
        this.apps.get(msg.app)?.setHealth(this, msg.healthy, msg.reason);
        this.webApps.get(msg.app)?.setHealth(this, msg.healthy, msg.reason);
        return Promise.resolve();
    }
  }

  /** Closes an app; answers once its port is really free, so it can be claimed again at once. */
  async #unexpose(id: number, name: string): Promise<void> {
    if (await this.udp.unexpose(name)) return this.#send({ type: "unexposed", id, app: name });
    const web = this.webApps.get(name);
    if (web !== undefined && this.webApps.delete(name)) {
      web.leave(this, this.#s.web, false);
      this.#s.cluster?.release(this, web.shape.names.map(hostKey));
    }
    const app = this.apps.get(name);
    this.apps.delete(name);
    // While other replicas still serve it only this one leaves; the last one closes it.
    if (app?.removeReplica(this)) {
      this.#s.registry.release(this.group, name, app.entry);
      await this.#closeApp(app);
      this.#s.log.info(`${this.group}/${name} closed; port ${app.entry.port} is free`);
    }
    return this.#send({ type: "unexposed", id, app: name });
  }

  async #expose(msg: Expose): Promise<void> {
    const { id, app: name, port } = msg;
    const refuse = (code: WireRefusalCode, message: string) => {
      this.#s.log.info(`refused ${this.group}/${name}: ${message}`);
      const where = { addr: this.clientAddr, group: this.group, app: name };
      this.#s.monitor.refused(code, message, where);
      return this.#send({ type: "refused", id, code, message });
    };
    const info = { group: this.group, app: name, port, addr: this.clientAddr };
    const forbidden = await consult("onExpose", this.#s.hooks.onExpose, info, this.#s.log);
    if (this.#ended) return;
    if (forbidden !== undefined) return refuse("forbidden", forbidden);
    if (this.apps.has(name) || this.webApps.has(name) || this.udp.has(name)) {
      return refuse("app_exists", `app ${this.group}/${name} is already exposed`);
    }
    const maxApps = Math.min(this.#s.limits.maxAppsPerGroup, this.quota?.maxApps ?? Infinity);
    if (this.apps.size + this.webApps.size + this.udp.size >= maxApps) {
      const why = maxApps === this.quota?.maxApps
        ? `group ${this.group} may expose at most ${maxApps} apps (its entry ${this.quota.entry} in the users file)`
        : `a group may expose at most ${maxApps} apps (limits.max_apps_per_group)`;
      return refuse("quota", why);
    }
    const members = this.shared ? this.#s.registry.group(this.group)?.members ?? [] : [];
    const typeMismatch = replicaTypeMismatch(members, this, msg);
    if (typeMismatch !== undefined) return refuse("replica_mismatch", typeMismatch);
    if (msg.web !== undefined) { // an http or tls app: names on the shared listeners, no port
      const web = { app: name, web: msg.web, balance: msg.balance };
      const names = this.#s.cluster &&
        clusterNames(this.#s.web, this, members, web, this.quota?.hosts);
      const held = names && await this.#s.cluster!.claimHosts(this, names);
      if (held === "retry") return this.end("the cluster store stayed unreachable");
      if (held !== undefined) return refuse(held.code, held.message);
      if (this.#ended) return;
      const done = exposeWebApp(this.#s.web, this.#s, this, members, web, this.quota?.hosts);
      if (!done.ok && names) this.#s.cluster?.release(this, names.names.map(hostKey));
      if (!done.ok) return refuse(done.code, done.message);
      this.webApps.set(name, done.app);
      this.#s.log.info(`${done.app.route.id} is live on ${done.app.urls.join(" ")}`);
      return this.#send({ type: "exposed", id, app: name, port: 0, urls: [...done.app.urls] });
    }
    if (msg.udp !== undefined) {
      const answer = await this.udp.expose(msg, this.quota?.ports);
      if ("code" in answer) return refuse(answer.code, answer.message);
      return this.#send({ type: "exposed", id, app: name, port: answer.port });
    }
    const sibling = this.shared ? siblingApp(this.#s.registry, this, name) : undefined;
    if (sibling) {
      const mismatch = replicaMismatch(sibling, msg);
      if (mismatch !== undefined) return refuse("replica_mismatch", mismatch);
      sibling.addReplica(this);
      this.apps.set(name, sibling);
      return this.#send({ type: "exposed", id, app: name, port: sibling.entry.port });
    }
    const allowFrom = msg.allowFrom === undefined ? undefined : parseCidrList(msg.allowFrom);
    if (typeof allowFrom === "string") return refuse("bad_request", `allow_from: ${allowFrom}`);
    const candidates = this.#s.registry.candidates(port, msg.hint, this.quota?.ports);
    if (!Array.isArray(candidates)) return refuse(candidates.code, candidates.message);
    const unbindable = (why: string) => this.#s.log.error(`${this.group}/${name}: ${why}`);
    const bound = await (this.#s.cluster?.bindPort(this, port, candidates, unbindable) ??
      bindPublicPort(this.#s.publicHost, port, candidates, unbindable));
    if (bound === "retry") return this.end("the cluster store stayed unreachable");
    if (this.#ended && !("code" in bound)) return closeQuietly(bound.listener);
    if ("code" in bound) return refuse(bound.code, bound.message);
    const entry = this.#s.registry.claim(this.group, name, bound.port, msg.description);
    const app = new PublicApp(this.#s, this, {
      entry,
      listener: bound.listener,
      limits: msg.limits ?? {},
      traffic: this.#s.monitor.appExposed(this.group, name),
      ...(allowFrom === undefined ? {} : { allowFrom }),
      shared: this.shared,
      requestedPort: port,
      ...(msg.balance === undefined ? {} : { balance: msg.balance }),
    });
    this.apps.set(name, app);
    this.#s.log.info(
      `${this.group}/${name} is live on ${
        formatHostPort({ hostname: this.#s.publicHost, port: bound.port })
      }`,
    );
    return this.#send({ type: "exposed", id, app: name, port: bound.port });
  }

  /** Closes an app's listener and users; resolves once its port is free again. */
  #closeApp(app: PublicApp, dropUsers = true): Promise<void> {
    const closed = app.close(dropUsers);
    this.#s.cluster?.release(this, [{ kind: "port", key: String(app.entry.port) }]);
    this.#s.monitor.appClosed(this.group, app.entry.app, app.traffic);
    return closed;
  }
}

function hostKey(name: string): { kind: "host"; key: string } {
  return { kind: "host", key: name.toLowerCase() };
}
