/**
 * One node's picture of the whole cluster: every live claim and node, fed by
 * a snapshot and then by the store's feed. Routing a user asks this view
 * (`byPort`, `byHost`), never the store, so a user connection costs no store
 * operation and keeps working while the store is unreachable.
 *
 * Merging is by fencing token: a claim event replaces what the view has for
 * the key only if its token is larger, and a release or expiry removes it
 * only if it names that token or a later one. So events that arrive twice,
 * late, or around a snapshot leave the view as the store has it. After a
 * reconnect (`feed_ready`) or a data loss (`reset`) the view takes a new
 * snapshot and reports the differences as events.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { sleep } from "../util/backoff.ts";
import {
  type Claim,
  type ClaimKey,
  type ClusterStore,
  type FeedMessage,
  keyId,
  type NodeRecord,
  normalKey,
  type Snapshot,
  type StoreEvent,
} from "./store.ts";

/** What changed in the view. `why: "resync"` marks a difference a snapshot found. */
export type ViewEvent =
  | { type: "claimed"; claim: Claim; replaced?: Claim }
  | { type: "released"; claim: Claim; why: "release" | "expire" | "resync" }
  | { type: "node_up"; node: NodeRecord }
  | { type: "node_down"; node: NodeRecord; why: "leave" | "expire" | "resync" }
  | { type: "synced"; epoch: string; claims: number; nodes: number };

/** A view listener; it must not throw. */
export type ViewListener = (event: ViewEvent) => void;

/** Options for {@linkcode ClusterView}. */
export interface ClusterViewOptions {
  /** Wait before trying a failed snapshot again. @default 1000 */
  retryMs?: number;
}

/**
 * The in-memory view of a cluster store.
 *
 * @example
 * ```ts
 * import { RedisStore } from "./redis_store.ts";
 * import { ClusterView } from "./view.ts";
 * const store = new RedisStore({ url: "redis://127.0.0.1:6379" });
 * const view = new ClusterView(store);
 * await view.synced();
 * const holder = view.byPort(20001); // who serves public port 20001, if anyone
 * if (holder) console.log(`port 20001: group of node ${holder.node}`);
 * view.close();
 * await store.close();
 * ```
 */
export class ClusterView {
  readonly #store: ClusterStore;
  readonly #retryMs: number;
  readonly #claims = new Map<string, Claim>();
  readonly #nodes = new Map<string, NodeRecord>();
  readonly #listeners = new Set<ViewListener>();
  readonly #closer = new AbortController();
  readonly #unsubscribe: () => void;
  readonly #log = getLogger(["burrow", "cluster", "view"]);
  /** Events that arrived while a snapshot was on its way; applied after it. */
  #buffer: StoreEvent[] | undefined;
  #again = false;
  #epoch: string | undefined;
  #syncedAt: number | undefined;
  #syncWaiters: Array<() => void> = [];

  /**
   * Starts listening to `store` and takes a first snapshot. If the feed was
   * not live yet, its `feed_ready` brings another, so nothing is missed.
   */
  constructor(store: ClusterStore, options: ClusterViewOptions = {}) {
    this.#store = store;
    this.#retryMs = options.retryMs ?? 1000;
    this.#unsubscribe = store.subscribe((m) => this.#feed(m));
    void this.#resync();
  }

  /** Resolves once the view has taken a snapshot (at once if it has). */
  synced(): Promise<void> {
    if (this.#syncedAt !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.#syncWaiters.push(resolve));
  }

  /** When the last snapshot was applied (local clock), or undefined before the first. */
  get syncedAt(): number | undefined {
    return this.#syncedAt;
  }

  /** The store epoch the view is at. */
  get epoch(): string | undefined {
    return this.#epoch;
  }

  /** The live claim on a key. */
  get(key: ClaimKey): Claim | undefined {
    return this.#claims.get(keyId(normalKey(key)));
  }

  /** Who holds public port `port`. */
  byPort(port: number): Claim | undefined {
    return this.#claims.get(`port/${port}`);
  }

  /** Who serves host name `name` (any case). */
  byHost(name: string): Claim | undefined {
    return this.#claims.get(`host/${name.toLowerCase()}`);
  }

  /** Who holds group `name`. */
  byGroup(name: string): Claim | undefined {
    return this.#claims.get(`group/${name}`);
  }

  /** All live claims, optionally of one kind. */
  claims(kind?: Claim["kind"]): Claim[] {
    const all = [...this.#claims.values()];
    return kind === undefined ? all : all.filter((c) => c.kind === kind);
  }

  /** All live nodes. */
  nodes(): NodeRecord[] {
    return [...this.#nodes.values()];
  }

  /** One live node by name. */
  node(name: string): NodeRecord | undefined {
    return this.#nodes.get(name);
  }

  /** Listens to changes; returns the function that stops listening. */
  on(listener: ViewListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops listening to the store (the store stays open). */
  close(): void {
    this.#closer.abort();
    this.#unsubscribe();
    this.#listeners.clear();
  }

  #feed(m: FeedMessage): void {
    switch (m.type) {
      case "feed_ready":
      case "reset":
        void this.#resync();
        return;
      case "state":
        return;
      default:
        if (this.#buffer) this.#buffer.push(m);
        else this.#apply(m);
    }
  }

  /** Takes a snapshot (again if asked meanwhile), retrying while the store fails. */
  async #resync(): Promise<void> {
    if (this.#buffer) {
      this.#again = true;
      return;
    }
    this.#buffer = [];
    try {
      while (!this.#closer.signal.aborted) {
        this.#again = false;
        const result = await this.#store.snapshot();
        if (this.#closer.signal.aborted) return;
        if (!result.ok) {
          this.#log.debug(`snapshot failed: ${result.error}; again in ${this.#retryMs} ms`);
          await sleep(this.#retryMs, this.#closer.signal);
          continue;
        }
        this.#replace(result.snapshot);
        const buffered = this.#buffer;
        this.#buffer = [];
        for (const event of buffered) this.#apply(event);
        if (!this.#again) break;
      }
    } finally {
      const rest = this.#buffer ?? [];
      this.#buffer = undefined;
      if (!this.#closer.signal.aborted) { for (const event of rest) this.#apply(event); }
    }
  }

  #replace(snapshot: Snapshot): void {
    const claims = new Map(snapshot.claims.map((c) => [keyId(c), c]));
    for (const [id, had] of this.#claims) {
      if (!claims.has(id)) {
        this.#claims.delete(id);
        this.#emit({ type: "released", claim: had, why: "resync" });
      }
    }
    for (const [id, claim] of claims) {
      const had = this.#claims.get(id);
      this.#claims.set(id, claim);
      if (!had || had.token !== claim.token || had.session !== claim.session) {
        this.#emit(had ? { type: "claimed", claim, replaced: had } : { type: "claimed", claim });
      }
    }
    const nodes = new Map(snapshot.nodes.map((n) => [n.name, n]));
    for (const [name, had] of this.#nodes) {
      if (nodes.get(name)?.instance !== had.instance) {
        this.#nodes.delete(name);
        this.#emit({ type: "node_down", node: had, why: "resync" });
      }
    }
    for (const [name, node] of nodes) {
      const had = this.#nodes.has(name);
      this.#nodes.set(name, node);
      if (!had) this.#emit({ type: "node_up", node });
    }
    this.#epoch = snapshot.epoch;
    this.#syncedAt = Date.now();
    this.#emit({
      type: "synced",
      epoch: snapshot.epoch,
      claims: this.#claims.size,
      nodes: this.#nodes.size,
    });
    for (const resolve of this.#syncWaiters.splice(0)) resolve();
  }

  #apply(event: StoreEvent): void {
    switch (event.type) {
      case "claim": {
        const id = keyId(event.claim);
        const had = this.#claims.get(id);
        if (had && had.token >= event.claim.token) return;
        this.#claims.set(id, event.claim);
        const replaced = event.replaced ?? had;
        this.#emit(
          replaced
            ? { type: "claimed", claim: event.claim, replaced }
            : { type: "claimed", claim: event.claim },
        );
        return;
      }
      case "release":
      case "expire": {
        const id = keyId(event.claim);
        const had = this.#claims.get(id);
        if (!had || had.token > event.claim.token) return;
        this.#claims.delete(id);
        this.#emit({ type: "released", claim: had, why: event.type });
        return;
      }
      case "node_join": {
        const had = this.#nodes.get(event.node.name);
        this.#nodes.set(event.node.name, event.node);
        if (had?.instance !== event.node.instance) {
          if (had) this.#emit({ type: "node_down", node: had, why: "leave" });
          this.#emit({ type: "node_up", node: event.node });
        }
        return;
      }
      case "node_leave":
      case "node_expire": {
        const had = this.#nodes.get(event.node.name);
        if (!had || had.instance !== event.node.instance) return;
        this.#nodes.delete(event.node.name);
        this.#emit({
          type: "node_down",
          node: had,
          why: event.type === "node_leave" ? "leave" : "expire",
        });
        return;
      }
    }
  }

  #emit(event: ViewEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch (err) {
        this.#log.error(`view listener failed: ${err instanceof Error ? err.message : err}`);
      }
    }
  }
}
