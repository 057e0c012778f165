/**
 * The streams the peer opened that wait for `accept()`, and the callers
 * waiting for one; once no more will come, every waiter gets null.
 *
 * @module
 */

import type { MuxStream } from "./stream.ts";

/** Streams waiting to be accepted, and accepts waiting for a stream. */
export class AcceptQueue {
  #backlog: MuxStream[] = [];
  #waiters: Array<(s: MuxStream | null) => void> = [];

  /** Streams waiting to be accepted. */
  get length(): number {
    return this.#backlog.length;
  }

  /** Hands `stream` to a waiting accept, or keeps it. */
  push(stream: MuxStream): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(stream);
    else this.#backlog.push(stream);
  }

  /** The next stream; null at once if `ended` and none is kept. */
  next(ended: boolean): Promise<MuxStream | null> {
    const next = this.#backlog.shift();
    if (next !== undefined) return Promise.resolve(next);
    if (ended) return Promise.resolve(null);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** No more streams will come: every waiting accept gets null. */
  end(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w(null);
  }

  /** Forgets the kept streams (the session failed them). */
  clear(): void {
    this.#backlog = [];
  }
}
