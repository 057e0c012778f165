/**
 * One app's traffic across its exposures, as the monitor keeps it. Each
 * exposure counts into its own `TrafficCounter` (its limits and
 * `services()` read that one); this adds them up, and keeps what ended
 * exposures counted once their last user has left, so the figures survive
 * a client's reconnects while nothing is counted twice.
 *
 * @module
 */

import { type ByteTotals, TrafficCounter } from "../tunnel/traffic.ts";

/** An app's figures across its exposures. */
export interface AppFigures extends ByteTotals {
  /** User connections open now. */
  connections: number;
  /** User connections ever opened. */
  total: number;
  /** When a user last connected, left or moved bytes (ms since the epoch), if ever. */
  lastActivity: number | undefined;
}

/** The figures of an app never seen. */
export const NO_FIGURES: Readonly<AppFigures> = {
  connections: 0,
  total: 0,
  bytesIn: 0,
  bytesOut: 0,
  lastActivity: undefined,
};

/** One app's counters: live exposures, ended ones still serving users, and what is done. */
export class AppTraffic {
  #counters = new Set<TrafficCounter>();
  #ended = new WeakSet<TrafficCounter>();
  #done = { total: 0, bytesIn: 0, bytesOut: 0 };
  #lastActivity: number | undefined;

  /** A new exposure's counter. */
  open(): TrafficCounter {
    const counter = new TrafficCounter();
    this.#counters.add(counter);
    return counter;
  }

  /** The latest exposure's counter, made if there is none. */
  latest(): TrafficCounter {
    let latest: TrafficCounter | undefined;
    for (const counter of this.#counters) latest = counter;
    return latest ?? this.open();
  }

  /** Every counter still held (to close a connection in whichever holds it). */
  counters(): Iterable<TrafficCounter> {
    return this.#counters;
  }

  /** True if `counter` is one of this app's. */
  has(counter: TrafficCounter): boolean {
    return this.#counters.has(counter);
  }

  /** The exposure of `counter` ended; its figures are kept once its users are gone. */
  end(counter: TrafficCounter): void {
    if (!this.#counters.has(counter)) return;
    this.#ended.add(counter);
    this.fold();
  }

  /** Records activity seen by sampling (bytes moved on a held connection). */
  touch(at: number): void {
    if (at > (this.#lastActivity ?? 0)) this.#lastActivity = at;
  }

  /** Folds the counters of ended exposures whose users are gone into the totals. */
  fold(): void {
    for (const counter of this.#counters) {
      if (!this.#ended.has(counter) || counter.connections > 0) continue;
      const bytes = counter.bytes();
      this.#done.total += counter.total;
      this.#done.bytesIn += bytes.bytesIn;
      this.#done.bytesOut += bytes.bytesOut;
      if (counter.lastActivity !== undefined) this.touch(counter.lastActivity);
      this.#counters.delete(counter);
    }
  }

  /** What ended exposures counted plus the live counters. */
  figures(): AppFigures {
    const f: AppFigures = { connections: 0, ...this.#done, lastActivity: this.#lastActivity };
    for (const counter of this.#counters) {
      const bytes = counter.bytes();
      f.connections += counter.connections;
      f.total += counter.total;
      f.bytesIn += bytes.bytesIn;
      f.bytesOut += bytes.bytesOut;
      const at = counter.lastActivity;
      if (at !== undefined && at > (f.lastActivity ?? 0)) f.lastActivity = at;
    }
    return f;
  }
}
