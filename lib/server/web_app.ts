/**
 * One web app (`type: http` or `type: tls`) as the server serves it: its
 * claim on names (one route, however many clients serve it), its replicas
 * (one session, or several of a `shared: true` group), and the two
 * questions the edge asks of it:
 *
 * - **admit**, for every request (also each one on a kept-alive upstream
 *   stream) and every passed-through connection: the group's
 *   `max_connections` counts every request in flight, as it counts TCP
 *   users (a request beyond it is turned away, 503, and counted as a
 *   `group_quota` turn-away); the replica is picked by the app's `balance`
 *   among the healthy ones;
 * - **dial**: a stream to the admitted replica's local service, the same
 *   steps as for a TCP user (take a work stream, `start` it, wait for
 *   `started`). A replica that cannot reach its service is passed over
 *   for the next one: nothing has reached the user yet, so it loses
 *   nothing.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import type { ServerMonitor } from "../dashboard/monitor.ts";
import type { BalancePolicy } from "../protocol/protocol.ts";
import type { Duplex } from "../transport/transport.ts";
import type { Route } from "../http/routes.ts";
import type { Admission, Dialed } from "../http/upstream.ts";
import type { ProxiedAddresses } from "../tunnel/proxy_protocol.ts";
import { errorMessage } from "../util/errors.ts";
import { type Replica, ReplicaSet } from "./replicas.ts";
import { describeWorkError, type WorkSource } from "./work_conn.ts";

/** What a web app needs of a session serving it. */
export interface WebSession {
  /** Unique per session: the key of its pooled streams at the edge. */
  readonly id: string;
  readonly group: string;
  readonly clientAddr: string;
  readonly ended: boolean;
  readonly work: WorkSource;
  /** Why the group may take no more users (its `max_connections`), or undefined. */
  groupFull(): string | undefined;
  nextWorkId(): number;
}

/** What a web app needs from the server (turn-aways and health changes are counted as for TCP apps). */
export interface WebAppServices {
  log: Logger;
  monitor: Pick<ServerMonitor, "userTurnedAway" | "replicaHealth">;
}

/** What {@linkcode WebApp.leave} tells the web side (the server's `WebService` fits). */
export interface WebNames {
  edge: { dropUpstream(id: string, target?: string): void };
  setLive(id: string, live: boolean, holder?: Route): void;
  release(id: string, holder?: Route): void;
}

/** What replicas must agree on: the type and every name and path prefix. */
export interface WebAppShape {
  type: "http" | "tls";
  names: readonly string[];
  paths: readonly string[];
}

/** A web app and its replicas. */
export class WebApp {
  readonly route: Route;
  readonly app: string;
  readonly urls: readonly string[];
  readonly shape: WebAppShape;
  /** Requests and passed-through connections in flight: they count toward `max_connections`. */
  inFlight = 0;
  #replicas: ReplicaSet<WebSession>;
  #s: WebAppServices;

  constructor(
    services: WebAppServices,
    init: {
      route: Route;
      app: string;
      urls: readonly string[];
      shape: WebAppShape;
      first: WebSession;
      balance?: BalancePolicy | undefined;
    },
  ) {
    this.#s = services;
    this.route = init.route;
    this.app = init.app;
    this.urls = init.urls;
    this.shape = init.shape;
    this.#replicas = new ReplicaSet(init.balance);
    this.#replicas.add(init.first, init.first.clientAddr);
  }

  /** The replicas, in the order they joined. */
  replicas(): readonly Replica<WebSession>[] {
    return this.#replicas.list();
  }

  /** Why `shape` cannot join this app's replicas, or undefined. */
  mismatch(shape: WebAppShape): string | undefined {
    const same = (a: readonly string[], b: readonly string[]) =>
      a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);
    const mine = this.shape;
    if (
      mine.type === shape.type && same(mine.names, shape.names) && same(mine.paths, shape.paths)
    ) {
      return undefined;
    }
    const show = (s: WebAppShape) =>
      `type ${s.type} on ${s.names.join(", ")}${
        s.paths.length ? ` paths ${s.paths.join(", ")}` : ""
      }`;
    return `app ${this.route.id} is served by other replicas as ${show(mine)}, ` +
      `this one asks for ${show(shape)}: give every replica the same type and host names`;
  }

  /** Adds another session of the shared group as a replica. */
  addReplica(session: WebSession): void {
    this.#replicas.add(session, session.clientAddr);
    this.#s.log.info(
      `${this.route.id}: replica ${session.clientAddr} joined (${this.#replicas.size} replicas)`,
    );
  }

  /** Removes `session`'s replica (its requests in flight finish); true when it was the last. */
  removeReplica(session: WebSession): boolean {
    const known = this.#replicas.of(session) !== undefined;
    const last = this.#replicas.remove(session);
    if (known && !last) {
      this.#s.log.info(
        `${this.route.id}: replica ${session.clientAddr} left (${this.#replicas.size} left)`,
      );
    }
    return last;
  }

  /** A replica's health report: an unhealthy one gets no requests until it is healthy again. */
  setHealth(session: WebSession, healthy: boolean, reason?: string): void {
    const changed = this.#replicas.setHealth(session, healthy, reason);
    if (!changed) return;
    const why = reason === undefined ? "" : `: ${reason}`;
    const line = `${this.route.id}: replica ${changed.clientAddr} is ${
      healthy ? "healthy again" : `unhealthy${why}`
    }`;
    if (healthy) this.#s.log.info(line);
    else this.#s.log.warn(line);
    this.#s.monitor.replicaHealth(this.route.group, this.app, changed.clientAddr, line);
  }

  /**
   * Takes `self`'s replica out of the app (its requests in flight finish).
   * Another replica's going on, its streams at the edge close; with the
   * last one the names go: freed, or held offline (502) when `offline`
   * (a single client's session ended: it may come back for them).
   */
  leave(self: WebSession, web: WebNames | undefined, offline: boolean): void {
    if (!this.removeReplica(self)) return web?.edge.dropUpstream(this.route.id, self.id);
    if (offline) web?.setLive(this.route.id, false, this.route);
    else web?.release(this.route.id, this.route);
  }

  /** Lets one request in on a healthy replica whose group has room, or says why not. */
  admit(): Admission {
    const live = (r: Replica<WebSession>) => !r.session.ended;
    const replica = this.#replicas.pick(
      new Set(),
      (r) => live(r) && r.session.groupFull() === undefined,
    );
    if (!replica) {
      const full = this.#replicas.list().find((r) => r.healthy && live(r))?.session.groupFull();
      if (full !== undefined) {
        this.#s.monitor.userTurnedAway(this.route.group, this.app, "group_quota");
        return { ok: false, status: 503, why: full };
      }
      return { ok: false, status: 502, why: "no healthy replica of the app is left" };
    }
    replica.active++;
    replica.served++;
    this.inFlight++;
    let done = false;
    return {
      ok: true,
      ticket: {
        target: replica.session.id,
        done: () => {
          if (done) return;
          done = true;
          replica.active--;
          this.inFlight--;
        },
      },
    };
  }

  /**
   * A stream to the app's local service on replica `target`, or on the
   * next one when that one cannot reach it (or has gone). Rejects when no
   * replica is left to try.
   */
  async dial(target: string, user?: ProxiedAddresses): Promise<Dialed> {
    const tried = new Set<Replica<WebSession>>();
    let replica = this.#replicas.list().find((r) => r.session.id === target);
    let why = "no healthy replica of the app is left";
    const usable = (r: Replica<WebSession>) => !r.session.ended;
    if (replica && !usable(replica)) replica = undefined;
    replica ??= this.#replicas.pick(tried, usable);
    while (replica) {
      tried.add(replica);
      try {
        const { stream, first } = await open(replica.session, this.app, user);
        const elsewhere = replica.session.id !== target;
        // The stream itself when it can be: a mux stream's own writes frame in place.
        return first.length === 0 && !elsewhere ? stream : new Started(stream, first, elsewhere);
      } catch (err) {
        why = describeWorkError(err);
        if (this.#replicas.size > 1) {
          this.#s.log.info(
            `${this.route.id}: replica ${replica.session.clientAddr} cannot take a request (${why})`,
          );
        }
      }
      replica = this.#replicas.pick(tried, usable);
    }
    throw new Error(why);
  }
}

const NOWHERE = { hostname: "0.0.0.0", port: 0 };

/** A started stream to `app` through `session`, with the bytes read with `started`; rejects with why not. */
async function open(
  session: WebSession,
  app: string,
  user?: ProxiedAddresses,
): Promise<{ stream: Duplex; first: Uint8Array }> {
  const work = await session.work.take();
  if (!work) throw new Error(`no work connection from ${session.clientAddr} in time`);
  try {
    await work.start({
      type: "start",
      id: session.nextWorkId(),
      app,
      user: user ? `${user.source.hostname}:${user.source.port}` : "http edge",
      source: user?.source ?? NOWHERE,
      destination: user?.destination ?? NOWHERE,
    });
  } catch (err) {
    throw new Error(errorMessage(err));
  }
  try {
    return { stream: work.stream, first: await work.started() };
  } catch (err) {
    work.reset();
    throw err;
  }
}

/** A started stream: its first reads return bytes already read from it. */
class Started implements Dialed {
  readonly elsewhere: boolean;
  #inner: Duplex;
  #first: Uint8Array;

  constructor(inner: Duplex, first: Uint8Array, elsewhere: boolean) {
    this.#inner = inner;
    this.#first = first;
    this.elsewhere = elsewhere;
  }

  read(p: Uint8Array): Promise<number | null> {
    if (this.#first.length === 0) return this.#inner.read(p);
    const n = Math.min(p.length, this.#first.length);
    p.set(this.#first.subarray(0, n));
    this.#first = this.#first.subarray(n);
    return Promise.resolve(n);
  }

  write(p: Uint8Array): Promise<number> {
    return this.#inner.write(p);
  }

  closeWrite(): Promise<void> {
    return this.#inner.closeWrite();
  }

  close(): void {
    this.#inner.close();
  }
}
