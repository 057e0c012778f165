/**
 * Keeps one node's leases alive: every `intervalMs` (a third of the lease by
 * default) one heartbeat (join) and one batched renewal of everything the
 * node holds, so the cost per node is two store operations per interval
 * (one more per 500 claims held). A node that stops beating (crash, freeze,
 * partition) loses its node record and its claims when the lease runs out.
 *
 * What comes back from the store decides what to do:
 * - renewed: nothing;
 * - lost to another holder: reported (`lost`), the server ends that session;
 * - gone with no holder (the lease ran out during a store outage, or the
 *   store lost its data): reasserted with the old token, so the cluster
 *   converges on its own; a reassert never takes a key a newer session holds.
 *
 * While the store is unreachable nothing is dropped: live tunnels go on and
 * the next beat tries again.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { sleep } from "../util/backoff.ts";
import {
  type Claim,
  type ClaimKey,
  type ClusterStore,
  keyId,
  type LostKey,
  type NodeInfo,
  type NodeRecord,
  normalKey,
} from "./store.ts";

/** Keys per renewal call. */
const RENEW_BATCH = 500;

/** What the keeper reports. */
export type KeeperEvent =
  | { type: "lost"; keys: LostKey[] }
  | { type: "reasserted"; claims: Claim[] }
  | { type: "name_taken"; holder: NodeRecord }
  | { type: "unreachable"; error: string };

/** Options for {@linkcode LeaseKeeper}. */
export interface LeaseKeeperOptions {
  /** The store. */
  store: ClusterStore;
  /** This node. */
  node: NodeInfo;
  /** The lease: the server's `heartbeat_timeout`. */
  ttlMs: number;
  /** Time between beats. @default ttlMs / 3 */
  intervalMs?: number;
}

/** One node's lease loop. */
export class LeaseKeeper {
  readonly #store: ClusterStore;
  readonly #node: NodeInfo;
  readonly #ttl: number;
  readonly #interval: number;
  readonly #held = new Map<string, Claim>();
  readonly #listeners = new Set<(e: KeeperEvent) => void>();
  readonly #closer = new AbortController();
  readonly #log = getLogger(["burrow", "cluster", "keeper"]);
  readonly #unsubscribe: () => void;
  #joined = false;
  #reassertAll = false;
  #loop: Promise<void> | undefined;

  constructor(options: LeaseKeeperOptions) {
    this.#store = options.store;
    this.#node = options.node;
    this.#ttl = options.ttlMs;
    this.#interval = options.intervalMs ?? Math.max(50, Math.floor(options.ttlMs / 3));
    this.#unsubscribe = this.#store.subscribe((m) => {
      if (m.type === "reset") this.#reassertAll = true;
    });
  }

  /** Starts beating (the first beat at once). */
  start(): void {
    this.#loop ??= (async () => {
      while (!this.#closer.signal.aborted) {
        await this.beat();
        await sleep(this.#interval, this.#closer.signal);
      }
    })();
  }

  /** Keeps renewing these claims (after a successful claim). */
  hold(claims: Claim[]): void {
    for (const c of claims) this.#held.set(keyId(c), c);
  }

  /** Stops renewing these keys (after a release). */
  drop(keys: ClaimKey[]): void {
    for (const k of keys) this.#held.delete(keyId(normalKey(k)));
  }

  /** What the node holds, as last renewed. */
  held(): Claim[] {
    return [...this.#held.values()];
  }

  /** Listens; returns the function that stops listening. */
  on(listener: (e: KeeperEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** One beat: join (heartbeat), then renew or reassert what is held. */
  async beat(): Promise<void> {
    const joined = await this.#store.join(this.#node, this.#ttl);
    if (!joined.ok) {
      if (joined.reason === "name_taken") {
        this.#emit({ type: "name_taken", holder: joined.holder });
      } else this.#emit({ type: "unreachable", error: joined.error });
      return;
    }
    if (joined.fresh && this.#joined) this.#reassertAll = true; // our record was gone
    this.#joined = true;
    if (this.#held.size === 0) return;
    if (this.#reassertAll) {
      this.#reassertAll = false;
      await this.#reassert(this.held());
      return;
    }
    const lost: LostKey[] = [];
    const held = this.held();
    // Batches bound how long one script holds Redis (about 10 ms per 500 keys).
    for (let from = 0; from < held.length; from += RENEW_BATCH) {
      const renewed = await this.#store.renew(held.slice(from, from + RENEW_BATCH), this.#ttl);
      if (!renewed.ok) return this.#emit({ type: "unreachable", error: renewed.error });
      for (const c of renewed.kept) this.#held.set(keyId(c), c);
      lost.push(...renewed.lost);
    }
    const taken = lost.filter((l) => l.holder !== undefined);
    const gone = lost.filter((l) => l.holder === undefined);
    this.#lose(taken);
    const mine = gone.map((l) => this.#held.get(keyId(l))).filter((c) => c !== undefined);
    if (mine.length > 0) await this.#reassert(mine);
  }

  /** Stops beating. With `leave`, releases what is held and leaves the cluster at once. */
  async close(options: { leave?: boolean } = {}): Promise<void> {
    this.#closer.abort();
    this.#unsubscribe();
    await this.#loop;
    if (options.leave) {
      if (this.#held.size > 0) await this.#store.release(this.held());
      await this.#store.leave(this.#node);
    }
    this.#held.clear();
    this.#listeners.clear();
  }

  /** Claims `claims` again with their tokens, one call per session; refusals are losses. */
  async #reassert(claims: Claim[]): Promise<void> {
    const bySession = Map.groupBy(claims, (c) => c.session);
    for (const group of bySession.values()) {
      const first = group[0]!;
      const owner = { node: first.node, session: first.session, runId: first.runId };
      const requests = group.map((c) => ({
        kind: c.kind,
        key: c.key,
        token: c.token,
        ...(c.meta === undefined ? {} : { meta: c.meta }),
      }));
      // One key at a time would let half a session survive; all or nothing keeps it whole.
      const result = await this.#store.claim(requests, owner, this.#ttl);
      if (!result.ok && result.reason === "unreachable") {
        this.#reassertAll = true;
        return this.#emit({ type: "unreachable", error: result.error });
      }
      if (!result.ok) {
        const holders = new Map(result.conflicts.map((c) => [keyId(c), c]));
        this.#lose(group.map((c) => {
          const holder = holders.get(keyId(c));
          return { ...c, ...(holder ? { holder } : {}) };
        }));
        continue;
      }
      for (const c of result.claims) this.#held.set(keyId(c), c);
      this.#log.info(`reasserted ${result.claims.length} claims of session ${owner.session}`);
      this.#emit({ type: "reasserted", claims: result.claims });
    }
  }

  #lose(keys: LostKey[]): void {
    if (keys.length === 0) return;
    for (const k of keys) this.#held.delete(keyId(k));
    this.#emit({ type: "lost", keys });
  }

  #emit(event: KeeperEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch (err) {
        this.#log.error(`keeper listener failed: ${err instanceof Error ? err.message : err}`);
      }
    }
  }
}
