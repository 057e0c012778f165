/**
 * One exposed app on the server: its public listener, its users, its
 * limits, its replicas (one session, or several for a shared group), and
 * the handler that serves each user in four steps: pick a replica and get
 * a work stream from it (bounded in time), start it, join the two, and
 * count the result.
 *
 * On a shared app the user's first bytes stay unread until the replica's
 * client says its local dial worked (`started`): a replica that cannot
 * reach its service (`start_failed`, or no work stream) is passed over and
 * the next one tried, so the user loses nothing; with none left the user
 * is closed at once.
 *
 * @module
 */

import type { AppEntry } from "../protocol/services.ts";
import type { BalancePolicy, TunnelLimits } from "../protocol/protocol.ts";
import { type Cidr, inRanges } from "../util/cidr.ts";
import { errorMessage } from "../util/errors.ts";
import { join, type JoinStats } from "../tunnel/join.ts";
import type { TrafficCounter } from "../tunnel/traffic.ts";
import { acceptLoop, closeQuietly, peer } from "../transport/net.ts";
import type { TurnedAwayCause } from "../dashboard/monitor.ts";
import { consult, observe } from "./hooks.ts";
import { describeWorkError, joinOutcome, WORK_TIMEOUT_MS, type WorkSource } from "./work_conn.ts";
import { type Replica, ReplicaSet } from "./replicas.ts";

import type { AppServices, UserConn } from "./app_services.ts";

export type { AppServices, UserConn };

/** What an app needs from the session that exposed it. */
export interface AppSession {
  readonly group: string;
  /** The client's address, as the dashboard shows a replica. */
  readonly clientAddr: string;
  /** Where users get work streams. */
  readonly work: WorkSource;
  /** A fresh work id. */
  nextWorkId(): number;
  /** True once the session has ended. */
  readonly ended: boolean;
  /** Why the group may take no more users (its `max_connections`), or undefined. */
  groupFull(): string | undefined;
  /** True while `app` is the session's live app of its name. */
  isLive(app: PublicApp): boolean;
  /** Lets go of `app` because a limit was reached; `closes`: the last replica, it closes the app. */
  retire(app: PublicApp, reason: string, dropUsers: boolean, closes: boolean): void;
}

/** An exposed app and its users. */
export class PublicApp {
  readonly entry: AppEntry;
  readonly limits: TunnelLimits;
  /** This exposure's users and bytes: the one counter the limits, `services()` and metrics read. */
  readonly traffic: TrafficCounter;
  /** Fires when `limits.maxServeSeconds` runs out: every replica's session retires the app. */
  readonly expiry?: ReturnType<typeof setTimeout>;
  #listener: Deno.TcpListener;
  #users = new Set<UserConn>();
  #drained: Array<() => void> = [];
  #allowFrom: Cidr[] | undefined;
  /** The accept loop; it ends (and the port is really free) after the listener closes. */
  #serving: Promise<void>;
  #s: AppServices;
  /** The session group-wide questions go to (quota, limits): the oldest replica's. */
  #session: AppSession;
  #replicas: ReplicaSet<AppSession>;
  /** Served by a shared group: several replicas, users held until `started`. */
  readonly shared: boolean;
  /** The port the first replica asked for (0: any); the others must ask for the same. */
  readonly requestedPort: number;

  constructor(
    services: AppServices,
    session: AppSession,
    init: {
      entry: AppEntry;
      listener: Deno.TcpListener;
      limits: TunnelLimits;
      traffic: TrafficCounter;
      allowFrom?: Cidr[];
      shared?: boolean;
      balance?: BalancePolicy;
      requestedPort?: number;
    },
  ) {
    this.#s = services;
    this.#session = session;
    this.shared = init.shared ?? false;
    this.requestedPort = init.requestedPort ?? init.entry.port;
    this.#replicas = new ReplicaSet(init.balance);
    this.#replicas.add(session, session.clientAddr);
    this.entry = init.entry;
    this.#listener = init.listener;
    this.limits = init.limits;
    this.traffic = init.traffic;
    this.#allowFrom = init.allowFrom;
    this.#serving = acceptLoop(
      this.#listener,
      (user) => this.#user(user),
      (reason) => this.#s.log.warn(`${this.#label}: accept failed: ${reason}`),
    );
    const seconds = this.limits.maxServeSeconds;
    if (seconds !== undefined) {
      this.expiry = setTimeout(
        () => this.#retire(`served for ${seconds}s`, true),
        seconds * 1000,
      );
    }
  }

  /** Users connected now. */
  get users(): number {
    return this.#users.size;
  }

  /** How users are spread over the replicas. */
  get balance(): BalancePolicy {
    return this.#replicas.policy;
  }

  /** The replicas, in the order they joined. */
  replicas(): readonly Replica<AppSession>[] {
    return this.#replicas.list();
  }

  /** Adds another session of the shared group as a replica. */
  addReplica(session: AppSession): void {
    this.#replicas.add(session, session.clientAddr);
    this.#s.log.info(
      `${this.#label}: replica ${session.clientAddr} joined (${this.#replicas.size} replicas)`,
    );
  }

  /**
   * Removes `session`'s replica (its users stay until they end); true when
   * it was the last one, and the app is to be closed.
   */
  removeReplica(session: AppSession): boolean {
    const last = this.#replicas.remove(session);
    const next = this.#replicas.list()[0];
    if (next) this.#session = next.session;
    if (!last) {
      this.#s.log.info(
        `${this.#label}: replica ${session.clientAddr} left (${this.#replicas.size} left)`,
      );
    }
    return last;
  }

  /** A replica's health report: an unhealthy one gets no users until it is healthy again. */
  setHealth(session: AppSession, healthy: boolean, reason?: string): void {
    const changed = this.#replicas.setHealth(session, healthy, reason);
    if (!changed) return;
    const why = reason === undefined ? "" : `: ${reason}`;
    const line = `${this.#label}: replica ${changed.clientAddr} is ${
      healthy ? "healthy again" : `unhealthy${why}`
    }`;
    if (healthy) this.#s.log.info(line);
    else this.#s.log.warn(line);
    this.#s.monitor.replicaHealth(this.#session.group, this.entry.app, changed.clientAddr, line);
  }

  /** Closes the listener (and, with `dropUsers`, the users); resolves once the port is free. */
  close(dropUsers = true): Promise<void> {
    clearTimeout(this.expiry);
    closeQuietly(this.#listener);
    if (dropUsers) { for (const user of this.#users) closeQuietly(user); }
    return this.#serving;
  }

  /** Resolves once no user is connected. */
  drained(): Promise<void> {
    if (this.#users.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }

  /**
   * Closes the app because one of its limits was reached: the limit holds
   * for the app, so every replica's session lets it go (each client hears
   * of it once its users are done) and the last one closes it, whichever
   * joined first.
   */
  #retire(reason: string, dropUsers: boolean): void {
    const replicas = this.#replicas.list();
    replicas.forEach((r, i) =>
      r.session.retire(this, reason, dropUsers, i === replicas.length - 1)
    );
  }

  get #label(): string {
    return `${this.#session.group}/${this.entry.app}`;
  }

  /** Serves a user relayed by another node. */
  serve(user: UserConn): Promise<void> {
    return this.#user(user);
  }

  async #user(user: UserConn): Promise<void> {
    const from = peer(user);
    const turnedAway = this.#turnAway(user);
    if (turnedAway !== undefined) {
      this.#s.monitor.userTurnedAway(this.#session.group, this.entry.app, turnedAway.cause);
      this.#s.log.debug(`turned user ${from} away from ${this.#label}: ${turnedAway.why}`);
      return closeQuietly(user);
    }
    const started = Date.now();
    const info = {
      group: this.#session.group,
      app: this.entry.app,
      port: this.entry.port,
      user: from,
    };
    const refused = await consult("onUserConnect", this.#s.hooks.onUserConnect, info, this.#s.log);
    const { maxUsers, maxConnections } = this.limits;
    // Checked after the hook answered: meanwhile the app may have closed or
    // filled up, and other users of the group may have been let in.
    const full = !this.#session.isLive(this)
      ? "the tunnel has closed"
      : this.#session.groupFull() ??
        (maxUsers !== undefined && this.traffic.connections >= maxUsers
          ? `the tunnel's limit of ${maxUsers} concurrent users is reached`
          : maxConnections !== undefined && this.traffic.total >= maxConnections
          ? `the tunnel has served its ${maxConnections} connections`
          : undefined);
    if (refused !== undefined || full !== undefined) {
      this.#s.log.debug(`refused user ${from} on ${this.#label}: ${refused ?? full}`);
      return closeQuietly(user);
    }
    user.setNoDelay(true);
    this.#users.add(user);
    const stats = this.traffic.open();
    if (maxConnections !== undefined && this.traffic.total >= maxConnections) {
      // This user is served; nobody after it.
      this.#retire(`served its limit of ${maxConnections} connections`, false);
    }
    let error: string | undefined;
    try {
      error = await this.#serve(user, from, stats);
    } finally {
      closeQuietly(user);
      this.#users.delete(user);
      if (this.#users.size === 0) { for (const done of this.#drained.splice(0)) done(); }
      this.traffic.close(stats);
    }
    const closed = {
      ...info,
      bytesIn: stats.aToB,
      bytesOut: stats.bToA,
      durationMs: Date.now() - started,
    };
    observe(
      "onClose",
      this.#s.hooks.onClose,
      error === undefined ? closed : { ...closed, error },
      this.#s.log,
    );
  }

  /**
   * Why a user may not reach the client at all, checked before any byte or
   * hook: `allow_from`, the group's concurrent-connection quota, and the
   * server's cap on users waiting for a work connection.
   */
  #turnAway(user: UserConn): { cause: TurnedAwayCause; why: string } | undefined {
    if (this.#allowFrom !== undefined) {
      const { hostname } = user.remoteAddr;
      if (!inRanges(hostname, this.#allowFrom)) {
        return { cause: "allow_from", why: "its address is not in the app's allow_from" };
      }
    }
    const full = this.#session.groupFull();
    if (full !== undefined) return { cause: "group_quota", why: full };
    const { maxPendingUsers } = this.#s.limits;
    const idle = this.#replicas.list().reduce((n, r) => n + r.session.work.idle, 0);
    if (idle === 0 && this.#s.pending.count >= maxPendingUsers) {
      const why = `${maxPendingUsers} users are waiting for work connections ` +
        `(limits.max_pending_users)`;
      this.#s.rare.warn("max-pending", `${why}: turning new users away`);
      return { cause: "pending_limit", why };
    }
    return undefined;
  }

  /**
   * Serves a user on one replica after another until one takes it (or
   * fails it after its first byte); resolves to why it failed, or undefined.
   */
  async #serve(user: UserConn, from: string, stats: JoinStats): Promise<string | undefined> {
    const tried = new Set<Replica<AppSession>>();
    let why = "no healthy replica of the app is left";
    while (true) {
      const replica = this.#replicas.pick(tried, (r) => !this.shared || !r.session.ended);
      if (!replica) {
        if (tried.size === 0 || this.shared) {
          this.#s.log.warn(`user ${from} on ${this.#label} closed: ${why}`);
        }
        return why;
      }
      tried.add(replica);
      const outcome = await this.#serveOn(replica, user, from, stats);
      if (outcome.retry !== true) return outcome.why;
      why = outcome.why ?? why;
      this.#s.log.info(
        `user ${from} on ${this.#label}: replica ${replica.clientAddr} cannot take it (${why})`,
      );
    }
  }

  /**
   * Joins a user to a work stream of one replica. `retry` when the replica
   * failed before any of the user's bytes were read (a shared app only).
   */
  async #serveOn(
    replica: Replica<AppSession>,
    user: UserConn,
    from: string,
    stats: JoinStats,
  ): Promise<{ why: string | undefined; retry?: boolean }> {
    const session = replica.session;
    const waitStart = performance.now();
    if (session.work.idle === 0) {
      this.#s.log.debug(`${this.#label}: no work connection up; waiting for the client's`);
    }
    const work = await session.work.take();
    this.#s.monitor.workWaited((performance.now() - waitStart) / 1000);
    if (!work) {
      const why = session.ended
        ? "the group went offline"
        : `no work connection from the client within ${WORK_TIMEOUT_MS / 1000}s`;
      if (this.shared) return { why, retry: true };
      this.#s.log.warn(`user ${from} on ${this.#label} closed: ${why}`);
      return { why };
    }
    const id = session.nextWorkId();
    try {
      const { remoteAddr: u, localAddr: pub } = user;
      await work.start({
        type: "start",
        id,
        app: this.entry.app,
        user: from,
        source: { hostname: u.hostname, port: u.port },
        destination: { hostname: pub.hostname, port: pub.port },
        // A shared app waits for the answer before it reads the user (to try
        // another replica): only a lone replica's answer may come lazily.
        ...(this.shared ? {} : { answer: "lazy" as const }),
      });
    } catch (err) {
      const why = errorMessage(err);
      if (this.shared) return { why, retry: true };
      this.#s.log.warn(`user ${from} on ${this.#label} closed: ${why}`);
      return { why };
    }
    let first = work.started();
    if (this.shared) {
      // Nothing of the user's has been read yet: another replica can still take it.
      try {
        first = Promise.resolve(await first);
      } catch (err) {
        work.reset();
        return { why: describeWorkError(err), retry: true };
      }
    }
    replica.active++;
    replica.served++;
    // A reset or failure here must end the client's side at once too, as a
    // reset of its stream, never as the FIN of a half-close.
    const result = await join(user, work.stream, {
      bToAFirst: first,
      stats,
      pool: this.#s.buffers,
    }).finally(() => replica.active--);
    if (result.error !== undefined) work.reset();
    const { why, how } = joinOutcome(result.error);
    const via = this.#replicas.size > 1 || this.shared ? ` via ${replica.clientAddr}` : "";
    this.#s.log.info(
      `user ${from} on ${this.#label}${via} ${how}: ${result.aToB} bytes in, ${result.bToA} out`,
    );
    return { why };
  }
}
