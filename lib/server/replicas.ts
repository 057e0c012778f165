/**
 * The replicas of one app of a shared group, and which one serves the next
 * user: `round_robin` (each in turn) or `least_conn` (the one with the
 * fewest users now, ties in turn). An unhealthy replica, one already tried
 * for this user, or one whose session ended is passed over. No I/O: the
 * user handler asks and reports, so this is tested without sockets.
 *
 * @module
 */

import type { BalancePolicy } from "../protocol/protocol.ts";

/** One client serving an app: its session (S), health and users. */
export interface Replica<S> {
  readonly session: S;
  /** The client's address, as the dashboard shows it. */
  readonly clientAddr: string;
  readonly since: Date;
  /** False while the client's health checks fail. */
  healthy: boolean;
  /** Why it is unhealthy, as the client said. */
  reason?: string;
  /** Users it serves now. */
  active: number;
  /** Users it has served. */
  served: number;
}

/** The replicas of one app, in the order they joined. */
export class ReplicaSet<S> {
  #replicas: Replica<S>[] = [];
  #next = 0;
  #policy: BalancePolicy;

  constructor(policy: BalancePolicy = "round_robin") {
    this.#policy = policy;
  }

  /** How users are spread. */
  get policy(): BalancePolicy {
    return this.#policy;
  }

  /** How many replicas there are. */
  get size(): number {
    return this.#replicas.length;
  }

  /** Every replica, in the order they joined. */
  list(): readonly Replica<S>[] {
    return this.#replicas;
  }

  /** The replica of `session`, if it is one. */
  of(session: S): Replica<S> | undefined {
    return this.#replicas.find((r) => r.session === session);
  }

  /** Adds `session` as a healthy replica (once). */
  add(session: S, clientAddr: string): Replica<S> {
    const known = this.of(session);
    if (known) return known;
    const replica: Replica<S> = {
      session,
      clientAddr,
      since: new Date(),
      healthy: true,
      active: 0,
      served: 0,
    };
    this.#replicas.push(replica);
    return replica;
  }

  /** Removes `session`'s replica; true if it was the last one. */
  remove(session: S): boolean {
    const at = this.#replicas.findIndex((r) => r.session === session);
    if (at >= 0) {
      this.#replicas.splice(at, 1);
      if (this.#next > at) this.#next--;
    }
    return this.#replicas.length === 0;
  }

  /**
   * Records a health report. Returns the replica if its state changed (so
   * the caller logs it once), otherwise undefined.
   */
  setHealth(session: S, healthy: boolean, reason?: string): Replica<S> | undefined {
    const replica = this.of(session);
    if (!replica || replica.healthy === healthy) return undefined;
    replica.healthy = healthy;
    if (healthy || reason === undefined) delete replica.reason;
    else replica.reason = reason;
    return replica;
  }

  /**
   * The replica for the next user, skipping unhealthy ones, those in
   * `skip` (tried already) and those `usable` rejects; undefined when none
   * is left.
   */
  pick(skip: ReadonlySet<Replica<S>>, usable: (r: Replica<S>) => boolean = () => true):
    | Replica<S>
    | undefined {
    const n = this.#replicas.length;
    let best: { replica: Replica<S>; at: number } | undefined;
    for (let i = 0; i < n; i++) {
      const at = (this.#next + i) % n;
      const replica = this.#replicas[at] as Replica<S>;
      if (!replica.healthy || skip.has(replica) || !usable(replica)) continue;
      if (this.#policy === "round_robin") {
        best = { replica, at };
        break;
      }
      if (best === undefined || replica.active < best.replica.active) best = { replica, at };
    }
    if (best === undefined) return undefined;
    this.#next = (best.at + 1) % n;
    return best.replica;
  }
}
