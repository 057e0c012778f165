/**
 * The edge's connections to apps: one small keep-alive pool per app. Each
 * pooled connection is a byte stream that `dial(route)` opened through the
 * tunnel to the app's local service (a work connection today, a stream of a
 * multiplexed link later); the edge speaks HTTP/1.1 over it, so the client
 * needs no HTTP code of its own. A connection is kept after its response
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

/** One agent per app id. */
export class UpstreamPool {
  #agents = new Map<string, { route: Route; agent: TunnelAgent }>();
  #dial: Dial;
  #options: Required<UpstreamOptions>;

  constructor(dial: Dial, options: UpstreamOptions = {}) {
    this.#dial = dial;
    this.#options = {
      maxStreams: options.maxStreams ?? 256,
      maxIdle: options.maxIdle ?? 128,
      idleMs: options.idleMs ?? 4000,
    };
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
    const agent = this.#agents.get(id)?.agent;
    if (!agent) return { busy: 0, idle: 0 };
    const count = (sets: NodeJS.ReadOnlyDict<unknown[]>) =>
      Object.values(sets).reduce((n, list) => n + (list?.length ?? 0), 0);
    return { busy: count(agent.sockets), idle: count(agent.freeSockets) };
  }

  /** Closes the streams of `id` (its app went). */
  drop(id: string): void {
    this.#agents.get(id)?.agent.destroy();
    this.#agents.delete(id);
  }

  /** Closes every stream. */
  close(): void {
    for (const { agent } of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }
}
