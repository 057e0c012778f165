/**
 * Traffic figures outside the hot path. `TrafficCounter` keeps one app's
 * connection and byte counts: the copy loop already counts bytes live into
 * a `JoinStats` object, so a connection costs one Set insertion here and
 * nothing per chunk. `TrafficHistory` samples totals about once a second
 * into bounded per-app series, for sparklines and "last activity".
 *
 * @module
 */

import type { JoinStats } from "./join.ts";
import { RingBuffer } from "../util/ring_buffer.ts";

/** Bytes moved: `in` from users to the app, `out` from the app to users. */
export interface ByteTotals {
  bytesIn: number;
  bytesOut: number;
}

/** One app's connections and bytes, counting live connections as they go. */
export class TrafficCounter {
  /** Connections open now. */
  connections = 0;
  /** Connections ever opened. */
  total = 0;
  /** When a connection last opened or closed (ms since the epoch), if one ever did. */
  lastActivity: number | undefined;
  #doneIn = 0;
  #doneOut = 0;
  #live = new Set<JoinStats>();

  /** Opens a connection; returns the stats object the join counts into (`stats` if given). */
  open(stats: JoinStats = { aToB: 0, bToA: 0 }): JoinStats {
    this.#live.add(stats);
    this.connections++;
    this.total++;
    this.lastActivity = Date.now();
    return stats;
  }

  /** Closes a connection opened by `open`, keeping its bytes. */
  close(stats: JoinStats): void {
    if (!this.#live.delete(stats)) return;
    this.connections--;
    this.lastActivity = Date.now();
    this.#doneIn += stats.aToB;
    this.#doneOut += stats.bToA;
  }

  /** Bytes so far, live connections included. */
  bytes(): ByteTotals {
    let bytesIn = this.#doneIn;
    let bytesOut = this.#doneOut;
    for (const live of this.#live) {
      bytesIn += live.aToB;
      bytesOut += live.bToA;
    }
    return { bytesIn, bytesOut };
  }
}

/** A sampled series: bytes per second in each direction, oldest first. */
export interface TrafficSeries {
  /** Bytes per second from users to the app. */
  in: number[];
  /** Bytes per second from the app to users. */
  out: number[];
}

/** Seconds of history kept per app by default. */
export const HISTORY_SECONDS = 60;

interface Track {
  last: ByteTotals;
  lastAt: number;
  /** When the totals last changed (ms since the epoch), if they ever did. */
  changedAt?: number;
  rates: RingBuffer<[number, number]>;
  seen: number;
}

/** Per-key byte rates sampled over time, bounded in length and in keys. */
export class TrafficHistory {
  #tracks = new Map<string, Track>();
  #length: number;
  #round = 0;

  /** @param length Samples kept per key. */
  constructor(length = HISTORY_SECONDS) {
    this.#length = length;
  }

  /** Starts a sampling round; keys not recorded in it are dropped by `endRound`. */
  beginRound(): void {
    this.#round++;
  }

  /**
   * Records `key`'s totals at `now` (ms). The rate is the change since the
   * previous record; totals that went down (a counter started afresh) count
   * as no traffic and become the new baseline.
   */
  record(key: string, totals: ByteTotals, now: number): void {
    const track = this.#tracks.get(key);
    if (!track) {
      const rates = new RingBuffer<[number, number]>(this.#length);
      this.#tracks.set(key, { last: totals, lastAt: now, rates, seen: this.#round });
      return;
    }
    const seconds = Math.max(0.001, (now - track.lastAt) / 1000);
    const dIn = Math.max(0, totals.bytesIn - track.last.bytesIn);
    const dOut = Math.max(0, totals.bytesOut - track.last.bytesOut);
    track.rates.push([Math.round(dIn / seconds), Math.round(dOut / seconds)]);
    if (dIn > 0 || dOut > 0) track.changedAt = now;
    track.last = totals;
    track.lastAt = now;
    track.seen = this.#round;
  }

  /** Forgets keys not recorded since `beginRound`. */
  endRound(): void {
    for (const [key, track] of this.#tracks) {
      if (track.seen !== this.#round) this.#tracks.delete(key);
    }
  }

  /** The key's series (empty if unknown). */
  series(key: string): TrafficSeries {
    const out: TrafficSeries = { in: [], out: [] };
    for (const [i, o] of this.#tracks.get(key)?.rates.toArray() ?? []) {
      out.in.push(i);
      out.out.push(o);
    }
    return out;
  }

  /** When the key's bytes last moved, as seen by sampling (ms since the epoch). */
  changedAt(key: string): number | undefined {
    return this.#tracks.get(key)?.changedAt;
  }
}
