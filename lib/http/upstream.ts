/**
 * The edge's connections to apps: one small keep-alive pool per app. Each
 * pooled connection is a byte stream that `dial(route)` opened through the
 * tunnel to the app's local service (a stream of the client's multiplexed
 * work connections); the edge speaks HTTP/1.1 over it, so the client needs
 * no HTTP code of its own. Requests go through the edge's own HTTP/1.1
 * client (`h1/`); upgrades (WebSocket) through a `node:http` agent, which
 * hands over the raw socket after `101`. A connection is kept after its
 * response for the app's next request, up to `maxIdle` per app, and dropped
 * after `idleMs` unused (shorter than common keep-alive timeouts of app
 * servers, so the edge rarely reuses one that the app is about to close).
 *
 * @module
 */

import http from "node:http";
import type { Duplex as NodeDuplex } from "node:stream";
import type { Duplex } from "../tunnel/join.ts";
import { toNodeStream } from "./node_stream.ts";
import type { Route } from "./routes.ts";
import { H1Pool } from "./h1/pool.ts";
import type { H1Connection } from "./h1/connection.ts";

/** Opens a byte stream to the app of `route` through the tunnel. */
export type Dial = (route: Route) => Promise<Duplex>;

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
  #dial: () => Promise<Duplex>;

  constructor(dial: () => Promise<Duplex>, options: Required<UpstreamOptions>) {
    super({
      keepAlive: true,
      maxSockets: options.maxStreams,
      maxFreeSockets: options.maxIdle,
      timeout: options.idleMs,
      scheduling: "lifo",
    });
    this.#dial = dial;
  }

  override createConnection(
    _options: unknown,
    done: (err: Error | null, socket?: NodeDuplex) => void,
  ): NodeDuplex {
    this.#dial().then((conn) => done(null, toNodeStream(conn)), (err) => done(err as Error));
    // node:http accepts the socket through `done` when this returns nothing
    return undefined as unknown as NodeDuplex;
  }
}

/** Kept-alive connections per app id: HTTP/1.1 exchanges, and an agent for upgrades. */
export class UpstreamPool {
  #agents = new Map<string, { route: Route; agent: TunnelAgent }>();
  #h1: H1Pool;
  /** The route object each id's pooled connections were dialled for. */
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
   * A connection to the app of `route` for one exchange: a kept-alive one
   * (`reused`) or a new one. Give it back with {@linkcode release}. A route
   * object that replaced an earlier one of the same id (the app came back)
   * never gets the old one's connections.
   */
  take(route: Route): Promise<{ conn: H1Connection; reused: boolean }> {
    if (this.#h1Routes.get(route.id) !== route) {
      this.#h1.drop((key) => key === route.id);
      this.#h1Routes.set(route.id, route);
    }
    return this.#h1.take(route.id, () => this.#dial(route));
  }

  /** Gives back what {@linkcode take} gave: kept if it can carry another request. */
  release(route: Route, conn: H1Connection): void {
    if (this.#h1Routes.get(route.id) === route) this.#h1.release(route.id, conn);
    else conn.close();
  }

  /**
   * The agent for `route`. A route object that replaced an earlier one of
   * the same id (the app came back) gets a fresh agent: the old streams
   * went with the old tunnel.
   */
  agent(route: Route): http.Agent {
    const held = this.#agents.get(route.id);
    if (held && held.route === route) return held.agent;
    held?.agent.destroy();
    const agent = new TunnelAgent(() => this.#dial(route), this.#options);
    this.#agents.set(route.id, { route, agent });
    return agent;
  }

  /** Streams the pool holds for `id` now (busy and idle). */
  streams(id: string): { busy: number; idle: number } {
    const h1 = this.#h1.streams(id);
    const agent = this.#agents.get(id)?.agent;
    if (!agent) return h1;
    const count = (sets: NodeJS.ReadOnlyDict<unknown[]>) =>
      Object.values(sets).reduce((n, list) => n + (list?.length ?? 0), 0);
    return { busy: h1.busy + count(agent.sockets), idle: h1.idle + count(agent.freeSockets) };
  }

  /** Closes the streams of `id` (its app went). */
  drop(id: string): void {
    this.#agents.get(id)?.agent.destroy();
    this.#agents.delete(id);
    this.#h1.drop((key) => key === id);
    this.#h1Routes.delete(id);
  }

  /** Closes every stream. */
  close(): void {
    for (const { agent } of this.#agents.values()) agent.destroy();
    this.#agents.clear();
    this.#h1.close();
    this.#h1Routes.clear();
  }
}
