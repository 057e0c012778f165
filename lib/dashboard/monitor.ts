/**
 * What one server has seen, for the dashboard, its JSON API and `/metrics`:
 * groups online and (a bounded number of) groups gone offline with their
 * last address, per-app connection and byte counters that survive a
 * client's reconnects, refusals by cause, auth failures, the
 * work-connection wait histogram, the event log, and per-app traffic
 * sampled once a second. The server tells it what happens; it never
 * touches a socket. One instance per server.
 *
 * Traffic is counted once: each exposure of an app gets a
 * `TrafficCounter` from {@linkcode ServerMonitor.appExposed}, which the
 * server's user handler counts into (its limits and `services()` read the
 * same counter); an app's figures here are those counters plus what its
 * earlier exposures counted.
 *
 * @module
 */

// Every refusal code, so each `burrow_refusals_total` series exists from the start.
import { REFUSAL_CODES, type WireRefusalCode } from "../util/errors.ts";
import { EventLog, type ServerEvent } from "./events.ts";
import type { JoinStats } from "../tunnel/join.ts";
import {
  type ExpositionFormat,
  Histogram,
  type MetricFamily,
  renderExposition,
  WAIT_BUCKETS,
} from "./metrics.ts";
import { TrafficCounter, TrafficHistory } from "../tunnel/traffic.ts";
import { VERSION } from "../util/version.ts";
import { AppTraffic } from "./app_traffic.ts";
import { serverFamilies } from "./families.ts";
import { type UdpCounter, UdpFigures } from "./udp_figures.ts";
import { type MonitoredWeb, webFamilies, withWebApps } from "./web_apps.ts";
import * as clustered from "./cluster_status.ts";
import type { AppStatus, GroupStatus, ReplicaStatus, ServerStatus } from "./status_types.ts";
import { type GroupRecord, groupStatus, serverTotals } from "./group_status.ts";
import {
  liveApps,
  type MonitoredApp,
  type MonitoredReplica,
  replicaEvent,
  replicaSamples,
} from "./replica_view.ts";

export type { MonitoredWeb };
export type { AppStatus, GroupStatus, MonitoredApp, MonitoredReplica, ReplicaStatus, ServerStatus };

/** What the monitor needs of a server session (`ServerSession` fits). */
export interface MonitoredSession {
  readonly group: string;
  readonly clientAddr: string;
  readonly clientVersion: string;
  readonly since: Date;
  /** One of several clients of a shared group. */
  readonly shared?: boolean;
  /** The apps exposed now. */
  stats(): MonitoredApp[];
}

/** Options for {@linkcode ServerMonitor}. */
export interface MonitorOptions {
  /** Offline groups remembered; the oldest is forgotten first. */
  offlineGroups?: number;
  /** Events kept in the log. */
  events?: number;
}

/** App counters kept per group at most; apps no longer exposed are dropped past it. */
const MAX_APP_RECORDS = 256;

/** Why a user was turned away before reaching the client. */
export type TurnedAwayCause = "allow_from" | "group_quota" | "pending_limit";

/** Series of `burrow_users_turned_away` kept at most (group, app and cause). */
const MAX_TURNED_AWAY_SERIES = 4096;

/** A server's figures and events. */
export class ServerMonitor {
  /** Recent connects, disconnects, reconnects and refusals. */
  readonly events: EventLog;
  readonly startedAt = new Date();
  #groups = new Map<string, GroupRecord>();
  #offlineLimit: number;
  #refusals = new Map<string, number>(REFUSAL_CODES.map((c) => [c, 0]));
  #authFailures = 0;
  #turnedAway = new Map<string, number>();
  #wait = new Histogram(WAIT_BUCKETS);
  #history = new TrafficHistory();
  /** Totals of forgotten groups, so server-wide totals never go down. */
  #forgotten = { connectionsTotal: 0, bytesIn: 0, bytesOut: 0 };
  #sampler: ReturnType<typeof setInterval> | undefined;
  #web: MonitoredWeb | undefined;
  #udp = new UdpFigures();
  #cluster: clustered.ClusterSource | undefined;

  constructor(options: MonitorOptions = {}) {
    this.#offlineLimit = options.offlineGroups ?? 100;
    this.events = new EventLog(options.events);
  }

  /** Shows the whole cluster this server is a node of. */
  attachCluster(cluster: clustered.ClusterSource): void {
    this.#cluster = cluster;
  }

  /** Shows the server's web apps and the edge's per-host figures too. */
  attachWeb(web: MonitoredWeb | undefined): void {
    this.#web = web;
  }

  /** Starts sampling traffic once a second (the timer does not keep a program alive). */
  start(): void {
    if (this.#sampler !== undefined) return;
    this.#sampler = setInterval(() => this.sample(), 1000);
    Deno.unrefTimer(this.#sampler);
  }

  /** Stops sampling. */
  stop(): void {
    clearInterval(this.#sampler);
    this.#sampler = undefined;
  }

  /** A group's session began: a connect, or a reconnect if the group was seen before. */
  groupOnline(session: MonitoredSession): void {
    const known = this.#groups.get(session.group);
    if (known?.session && session.shared === true) {
      known.members.push(session);
      this.events.add(replicaEvent(session, "joined", `${known.members.length} clients`));
      return;
    }
    const record: GroupRecord = known ?? {
      name: session.group,
      clientAddr: session.clientAddr,
      clientVersion: session.clientVersion,
      connectedSince: session.since,
      members: [],
      lastApps: [],
      apps: new Map(),
    };
    record.members = [session];
    const offlineFor = known?.disconnectedAt
      ? ` after ${Math.round((Date.now() - known.disconnectedAt.getTime()) / 1000)}s offline`
      : "";
    record.clientAddr = session.clientAddr;
    record.clientVersion = session.clientVersion;
    record.connectedSince = session.since;
    record.session = session;
    delete record.disconnectedAt;
    delete record.reason;
    this.#groups.set(session.group, record);
    const kind = known ? "reconnect" : "connect";
    this.events.add({
      kind,
      group: session.group,
      addr: session.clientAddr,
      message: `group ${session.group} ${kind}ed from ${session.clientAddr}${offlineFor}` +
        ` (burrow ${session.clientVersion})`,
    });
  }

  /** A group's session is ending (call before its apps are released). */
  groupOffline(session: MonitoredSession, reason: string): void {
    const record = this.#groups.get(session.group);
    if (!record || !record.members.includes(session)) return;
    record.members = record.members.filter((m) => m !== session);
    const next = record.members[0];
    if (next !== undefined) {
      record.session = next;
      record.clientAddr = next.clientAddr;
      record.clientVersion = next.clientVersion;
      record.connectedSince = next.since;
      this.events.add(replicaEvent(session, "left", `${record.members.length} left`, reason));
      return;
    }
    record.lastApps = session.stats().map((s) => s.entry);
    delete record.session;
    record.disconnectedAt = new Date();
    record.reason = reason;
    this.events.add({
      kind: "disconnect",
      group: session.group,
      addr: session.clientAddr,
      message: `group ${session.group} went offline: ${reason}`,
    });
    this.#forgetOldOffline();
  }

  /** A replica's health changed; `message` says how (one line, as the server logs it). */
  replicaHealth(group: string, app: string, addr: string, message: string): void {
    this.events.add({ kind: "health", group, app, addr, message });
  }

  /** The server refused a client, a query or an app. */
  refused(
    code: WireRefusalCode,
    message: string,
    where: { addr: string; group?: string; app?: string },
  ): void {
    this.#refusals.set(code, (this.#refusals.get(code) ?? 0) + 1);
    if (code === "auth_failed") this.#authFailures++;
    const event: Omit<ServerEvent, "id" | "at"> = {
      kind: "refused",
      code,
      addr: where.addr,
      message,
    };
    if (where.group !== undefined) event.group = where.group;
    if (where.app !== undefined) event.app = where.app;
    this.events.add(event);
  }

  /**
   * An app was exposed: the counter its users are counted into, for as
   * long as this exposure lasts. Hand it back with {@linkcode appClosed}.
   */
  appExposed(group: string, app: string): TrafficCounter {
    return this.#appRecord(group, app)?.open() ?? new TrafficCounter();
  }

  /** A udp app's datagram counter (the same one across its exposures). */
  udpCounter(group: string, app: string): UdpCounter {
    return this.#udp.counter(group, app);
  }

  /** An exposure ended; its counter's figures are kept once its last user has left. */
  appClosed(group: string, app: string, counter: TrafficCounter): void {
    const record = this.#groups.get(group)?.apps.get(app);
    record?.end(counter);
  }

  /**
   * A user was accepted on an app; `stats` is what its join counts into.
   * (The server counts into its exposure's counter directly; this counts
   * into the app's latest one.)
   */
  userOpened(group: string, app: string, stats: JoinStats): void {
    const record = this.#appRecord(group, app);
    if (!record) return;
    record.latest().open(stats);
  }

  /** A user connection opened by `userOpened` has ended. */
  userClosed(group: string, app: string, stats: JoinStats): void {
    const record = this.#groups.get(group)?.apps.get(app);
    if (!record) return;
    for (const counter of record.counters()) counter.close(stats);
    record.fold();
  }

  /**
   * A user was turned away before reaching the client: `cause` is
   * `allow_from`, `group_quota` or `pending_limit`.
   */
  userTurnedAway(group: string, app: string, cause: TurnedAwayCause): void {
    const key = `${group}\0${app}\0${cause}`;
    if (!this.#turnedAway.has(key) && this.#turnedAway.size >= MAX_TURNED_AWAY_SERIES) return;
    this.#turnedAway.set(key, (this.#turnedAway.get(key) ?? 0) + 1);
  }

  /** How long a user waited for a work connection, in seconds. */
  workWaited(seconds: number): void {
    this.#wait.observe(seconds);
  }

  /** Samples every online app's byte totals (the timer calls this once a second). */
  sample(now = Date.now()): void {
    this.#history.beginRound();
    for (const record of this.#groups.values()) {
      if (!record.session) continue;
      for (const { entry } of liveApps(record)) {
        const key = `${record.name}/${entry.app}`;
        const app = record.apps.get(entry.app);
        app?.fold();
        this.#history.record(key, app ? app.figures() : { bytesIn: 0, bytesOut: 0 }, now);
        const changed = this.#history.changedAt(key);
        if (app && changed !== undefined) app.touch(changed);
      }
    }
    this.#history.endRound();
  }

  /** Online groups by name, then offline ones, most recently gone first. */
  groups(): GroupStatus[] {
    const online: GroupStatus[] = [];
    const offline: Array<[number, GroupStatus]> = [];
    for (const record of this.#groups.values()) {
      const status = groupStatus(record, this.#history);
      if (record.disconnectedAt) offline.push([record.disconnectedAt.getTime(), status]);
      else online.push(status);
    }
    online.sort((a, b) => a.name.localeCompare(b.name));
    offline.sort((a, b) => b[0] - a[0]);
    const all = this.#udp.annotate(
      withWebApps([...online, ...offline.map(([, s]) => s)], this.#web),
    );
    return this.#cluster ? clustered.withClusterGroups(all, this.#cluster) : all;
  }

  /** Server-wide figures. */
  status(): ServerStatus {
    const totals = serverTotals(this.#groups.values(), this.#forgotten, {
      authFailures: this.#authFailures,
      refusals: [...this.#refusals.values()].reduce((a, b) => a + b, 0),
    });
    return {
      version: VERSION,
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.floor((Date.now() - this.startedAt.getTime()) / 1000),
      totals,
      ...(this.#cluster ? { cluster: clustered.clusterStatus(this.#cluster) } : {}),
    };
  }

  /** Every metric, as `/metrics` serves it. */
  metrics(format: ExpositionFormat = "text"): string {
    return renderExposition(this.#families(), format);
  }

  #families(): MetricFamily[] {
    const cluster = this.#cluster ? clustered.clusterFamilies(this.#cluster) : [];
    return [
      ...this.#serverFamilies(),
      ...this.#udp.families(),
      ...webFamilies(this.#web),
      ...cluster,
    ];
  }

  #serverFamilies(): MetricFamily[] {
    return serverFamilies({
      startedAt: this.startedAt,
      groups: [...this.#groups.values()].map((record) => ({
        name: record.name,
        online: record.session !== undefined,
        exposed: new Set(liveApps(record).map((s) => s.entry.app)),
        apps: record.apps,
        replicas: replicaSamples(liveApps(record)),
      })),
      turnedAway: this.#turnedAway,
      refusals: this.#refusals,
      authFailures: this.#authFailures,
      wait: this.#wait.sample(),
    });
  }

  #appRecord(group: string, app: string): AppTraffic | undefined {
    const record = this.#groups.get(group);
    if (!record) return undefined;
    let found = record.apps.get(app);
    if (!found) {
      if (record.apps.size >= MAX_APP_RECORDS) this.#pruneApps(record);
      found = new AppTraffic();
      record.apps.set(app, found);
    }
    return found;
  }

  /** Drops the counters of apps a group no longer exposes and nobody uses. */
  #pruneApps(record: GroupRecord): void {
    const exposed = new Set(liveApps(record).map((s) => s.entry.app));
    for (const [name, app] of record.apps) {
      if (!exposed.has(name) && app.figures().connections === 0) {
        this.#forget(app);
        record.apps.delete(name);
      }
    }
  }

  #forgetOldOffline(): void {
    const offline = [...this.#groups.values()].filter((r) => r.disconnectedAt !== undefined);
    if (offline.length <= this.#offlineLimit) return;
    offline.sort((a, b) => (a.disconnectedAt?.getTime() ?? 0) - (b.disconnectedAt?.getTime() ?? 0));
    for (const record of offline.slice(0, offline.length - this.#offlineLimit)) {
      for (const app of record.apps.values()) this.#forget(app);
      this.#groups.delete(record.name);
    }
  }

  /** Keeps a forgotten app's figures in the server-wide totals. */
  #forget(app: AppTraffic): void {
    const f = app.figures();
    this.#forgotten.connectionsTotal += f.total;
    this.#forgotten.bytesIn += f.bytesIn;
    this.#forgotten.bytesOut += f.bytesOut;
  }
}
