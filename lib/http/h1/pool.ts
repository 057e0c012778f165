/**
 * Kept-alive HTTP/1.1 connections to apps, by key (an app, or one replica
 * of it): a request takes the most recently used idle connection or dials
 * a new one; a connection whose exchange ended cleanly comes back, up to
 * `maxIdle` per key, and is closed after `idleMs` unused (shorter than the
 * keep-alive timeouts of common app servers, so the edge rarely reuses one
 * the app is about to close).
 *
 * @module
 */

import type { Duplex } from "../../transport/transport.ts";
import { H1Connection } from "./connection.ts";

/** Options for {@linkcode H1Pool}. */
export interface H1PoolOptions {
  /** Idle connections kept per key. @default 128 */
  maxIdle?: number;
  /** An idle connection unused this long is closed. @default 4000 */
  idleMs?: number;
}

interface Idle {
  conn: H1Connection;
  timer: ReturnType<typeof setTimeout>;
}

/** Idle connections by key, and the count of busy ones. */
export class H1Pool {
  #idle = new Map<string, Idle[]>();
  #busy = new Map<string, number>();
  #maxIdle: number;
  #idleMs: number;

  constructor(options: H1PoolOptions = {}) {
    this.#maxIdle = options.maxIdle ?? 128;
    this.#idleMs = options.idleMs ?? 4000;
  }

  /**
   * A connection for `key`: an idle one (`reused` true) or a new one over
   * `dial()` (with `keep` false, it serves one exchange and is not kept).
   * Give it back with {@linkcode release} once its exchange ended.
   */
  async take(
    key: string,
    dial: () => Promise<{ stream: Duplex; keep: boolean }>,
  ): Promise<{ conn: H1Connection; reused: boolean }> {
    const idle = this.#idle.get(key);
    while (idle && idle.length > 0) {
      const { conn, timer } = idle.pop() as Idle;
      clearTimeout(timer);
      if (idle.length === 0) this.#idle.delete(key);
      if (!conn.wake()) continue;
      this.#count(key, 1);
      return { conn, reused: true };
    }
    this.#count(key, 1);
    try {
      const { stream, keep } = await dial();
      const conn = new H1Connection(stream);
      if (!keep) conn.oneShot();
      return { conn, reused: false };
    } catch (err) {
      this.#count(key, -1);
      throw err;
    }
  }

  /** Gives a connection back: kept if it may carry another request, closed otherwise. */
  release(key: string, conn: H1Connection): void {
    this.#count(key, -1);
    let idle = this.#idle.get(key);
    if (!conn.reusable || (idle?.length ?? 0) >= this.#maxIdle) return conn.close();
    if (!idle) this.#idle.set(key, idle = []);
    const forget = () => {
      const list = this.#idle.get(key);
      const at = list?.indexOf(entry) ?? -1;
      if (list && at >= 0) list.splice(at, 1);
      if (list?.length === 0) this.#idle.delete(key);
      clearTimeout(entry.timer);
      conn.close();
    };
    const entry: Idle = { conn, timer: setTimeout(forget, this.#idleMs) };
    idle.push(entry);
    // An app that ends an idle connection (or speaks unasked) loses it at once.
    conn.sleep(forget);
  }

  /** Connections of the keys `match` accepts now: in an exchange, and idle. */
  streams(match: (key: string) => boolean): { busy: number; idle: number } {
    const out = { busy: 0, idle: 0 };
    for (const [key, n] of this.#busy) if (match(key)) out.busy += n;
    for (const [key, list] of this.#idle) if (match(key)) out.idle += list.length;
    return out;
  }

  /** Closes the idle connections of every key `match` accepts (its app went). */
  drop(match: (key: string) => boolean): void {
    for (const [key, list] of this.#idle) {
      if (!match(key)) continue;
      for (const { conn, timer } of list) {
        clearTimeout(timer);
        conn.close();
      }
      this.#idle.delete(key);
    }
  }

  /** Closes every idle connection. */
  close(): void {
    this.drop(() => true);
  }

  #count(key: string, by: number): void {
    const n = (this.#busy.get(key) ?? 0) + by;
    if (n <= 0) this.#busy.delete(key);
    else this.#busy.set(key, n);
  }
}
