/**
 * The edge's connections to apps: one small keep-alive pool per app and
 * replica (`target`: the edge asks {@linkcode Admit} for one per request,
 * so kept-alive streams never skip the app's balance or its quota). Each
 * pooled connection is a byte stream that `dial(route)` opened through the
 * tunnel to the app's local service (a stream of the client's multiplexed
 * work connections); the edge speaks HTTP/1.1 over it, so the client needs
 * no HTTP code of its own. Requests go through the edge's own HTTP/1.1
 * client (`h1/`); upgrades (WebSocket) through a `node:http` agent, which
 * hands over the raw socket after `101`. A connection is kept after its response
 * for the app's next request, up to `maxIdle` per app, and dropped after
 * `idleMs` unused (shorter than common keep-alive timeouts of app servers,
 * so the edge rarely reuses one that the app is about to close).
 *
 * @module
 */

import http from "node:http";
import type { Duplex as NodeDuplex } from "node:stream";
import type { Duplex } from "../tunnel/join.ts";
import { toNodeStream } from "./node_stream.ts";
import type { Route } from "./routes.ts";
import type { ProxiedAddresses } from "../tunnel/proxy_protocol.ts";
import { H1Pool } from "./h1/pool.ts";
import type { H1Connection } from "./h1/connection.ts";

/**
 * Opens a byte stream to the app of `route` through the tunnel, on replica
 * `target` (as {@linkcode Admit} chose it; it may use another one when that
 * one cannot reach its local service). `user`, for a passed-through
 * connection: the user's and the public address (a PROXY header names them).
 */
export type Dial = (route: Route, target: string, user?: ProxiedAddresses) => Promise<Dialed>;

/** A stream `dial` opened. */
export interface Dialed extends Duplex {
  /**
   * True when it leads to another replica than the one asked for (that one
   * could not reach its service): it serves its request and is not kept,
   * or the asked replica's pool would fill with the other's streams.
   */
  readonly elsewhere?: boolean;
}

/** One request (or passed-through connection) let in to an app. */
export interface Ticket {
  /** The replica that serves it: its streams are pooled apart. */
  readonly target: string;
  /** Gives the place back once the request ended (idempotent). */
  done(): void;
}

/** Whether a request may go to its app now. */
export type Admission =
  | { ok: true; ticket: Ticket }
  | { ok: false; status: 502 | 503; why: string };

/**
 * Lets one request (or passed-through connection) in to the app of
 * `route`, or says why not (`503`: the app's group has its quota in use;
 * `502`: no replica can take it). Asked for every request, also each one on
 * a kept-alive connection, so every request in flight counts.
 */
export type Admit = (route: Route) => Admission;

/** Lets everything in, with one target per app (an edge without a server around it). */
export const ADMIT_ALL: Admit = () => ({ ok: true, ticket: { target: "", done: () => {} } });

/**
 * What `dial` rejects with when the app is there but over its quota: the
 * user gets 503 instead of 502.
 */
export class UpstreamBusyError extends Error {
  constructor(message = "the app has no free capacity") {
    super(message);
    this.name = "UpstreamBusyError";
  }
}

/** Options for {@linkcode UpstreamPool}. */
export interface UpstreamOptions {
  /** Streams open at once per app (more requests wait for one). @default 256 */
  maxStreams?: number;
  /** Idle streams kept per app (they close after `idleMs` anyway). @default 128 */
  maxIdle?: number;
  /** An idle stream unused this long is closed. @default 4000 */
  idleMs?: number;
}

/** An agent whose connections come from `dial`. */
class TunnelAgent extends http.Agent {
  #dial: () => Promise<Dialed>;
  #oneShot = new WeakSet<object>();

  constructor(dial: () => Promise<Dialed>, options: Required<UpstreamOptions>) {
    super({
      keepAlive: true,
      maxSockets: options.maxStreams,
      maxFreeSockets: options.maxIdle,
      timeout: options.idleMs,
      scheduling: "lifo",
    });
    this.#dial = dial;
  }

  /**
   * A stream whose app has ended it is not kept for another request, nor
   * one opened on another replica than this agent's (see {@linkcode Dialed}).
   */
  override keepSocketAlive(socket: Parameters<http.Agent["keepSocketAlive"]>[0]): boolean {
    if (socket.readableEnded || this.#oneShot.has(socket)) return false;
    return super.keepSocketAlive(socket) as unknown as boolean;
  }

  #idle(socket: NodeDuplex): boolean {
    return Object.values(this.freeSockets).some((list) =>
      (list as unknown[] | undefined)?.includes(socket)
    );
  }

  override createConnection(
    _options: unknown,
    done: (err: Error | null, socket?: NodeDuplex) => void,
  ): NodeDuplex {
    this.#dial().then((conn) => {
      const socket = toNodeStream(conn);
      if (conn.elsewhere === true) this.#oneShot.add(socket);
      // An app that closes an idle kept-alive stream only ends it (the stream is half-open):
      // kept, it would take the next request and never answer it.
      socket.once("end", () => {
        if (this.#idle(socket)) socket.destroy();
      });
      done(null, socket);
    }, (err) => done(err as Error));
    // node:http accepts the socket through `done` when this returns nothing
    return undefined as unknown as NodeDuplex;
  }
}

/** Kept-alive connections per app id and target: HTTP/1.1 exchanges, and agents for upgrades. */
export class UpstreamPool {
  #apps = new Map<string, { route: Route; agents: Map<string, TunnelAgent> }>();
  #h1: H1Pool;
  /** The route object each id's pooled HTTP/1.1 connections were dialled for. */
  #h1Routes = new Map<string, Route>();
  #dial: Dial;
  #options: Required<UpstreamOptions>;

  constructor(dial: Dial, options: UpstreamOptions = {}) {
    this.#dial = dial;
    this.#options = {
      maxStreams: options.maxStreams ?? 256,
      maxIdle: options.maxIdle ?? 128,
      idleMs: options.idleMs ?? 4000,
    };
    this.#h1 = new H1Pool({ maxIdle: this.#options.maxIdle, idleMs: this.#options.idleMs });
  }

  /**
   * A connection to the app of `route` on replica `target` for one
   * exchange: a kept-alive one (`reused`) or a new one. Give it back with
   * {@linkcode release}. A route object that replaced an earlier one of the
   * same id (the app came back) never gets the old one's connections; a
   * stream that `dial` opened on another replica serves one exchange only.
   */
  take(route: Route, target = ""): Promise<{ conn: H1Connection; reused: boolean }> {
    if (this.#h1Routes.get(route.id) !== route) {
      this.#h1.drop((key) => key.startsWith(`${route.id} `));
      this.#h1Routes.set(route.id, route);
    }
    return this.#h1.take(h1Key(route.id, target), async () => {
      const stream = await this.#dial(route, target);
      return { stream, keep: stream.elsewhere !== true };
    });
  }

  /** Gives back what {@linkcode take} gave: kept if it can carry another request. */
  release(route: Route, target: string, conn: H1Connection): void {
    if (this.#h1Routes.get(route.id) === route) this.#h1.release(h1Key(route.id, target), conn);
    else conn.close();
  }

  /**
   * The agent for `route` on replica `target`. A route object that
   * replaced an earlier one of the same id (the app came back) gets fresh
   * agents: the old streams went with the old tunnel.
   */
  agent(route: Route, target = ""): http.Agent {
    let held = this.#apps.get(route.id);
    if (held && held.route !== route) {
      for (const agent of held.agents.values()) agent.destroy();
      held = undefined;
    }
    if (!held) {
      held = { route, agents: new Map() };
      this.#apps.set(route.id, held);
    }
    let agent = held.agents.get(target);
    if (!agent) {
      agent = new TunnelAgent(() => this.#dial(route, target), this.#options);
      held.agents.set(target, agent);
    }
    return agent;
  }

  /** Streams the pool holds for `id` now (busy and idle), over every target. */
  streams(id: string): { busy: number; idle: number } {
    const count = (sets: NodeJS.ReadOnlyDict<unknown[]>) =>
      Object.values(sets).reduce((n, list) => n + (list?.length ?? 0), 0);
    const out = this.#h1.streams((key) => key.startsWith(`${id} `));
    for (const agent of this.#apps.get(id)?.agents.values() ?? []) {
      out.busy += count(agent.sockets);
      out.idle += count(agent.freeSockets);
    }
    return out;
  }

  /** Closes the streams of `id` (its app went), or only those of `target` (a replica left). */
  drop(id: string, target?: string): void {
    this.#h1.drop((key) =>
      target === undefined ? key.startsWith(`${id} `) : key === h1Key(id, target)
    );
    if (target === undefined) this.#h1Routes.delete(id);
    const held = this.#apps.get(id);
    if (!held) return;
    for (const [key, agent] of held.agents) {
      if (target !== undefined && key !== target) continue;
      agent.destroy();
      held.agents.delete(key);
    }
    if (held.agents.size === 0) this.#apps.delete(id);
  }

  /** Closes every stream. */
  close(): void {
    for (const { agents } of this.#apps.values()) {
      for (const agent of agents.values()) agent.destroy();
    }
    this.#apps.clear();
    this.#h1.close();
    this.#h1Routes.clear();
  }
}

function h1Key(id: string, target: string): string {
  return `${id} ${target}`;
}
