/**
 * Helpers for the cluster store tests: stores that close themselves, a feed
 * recorder, and waiting for a condition with a deadline instead of a sleep.
 *
 * @module
 */

import { RedisStore, type RedisStoreOptions } from "../../lib/cluster/redis_store.ts";
import type { FeedMessage } from "../../lib/cluster/store.ts";

/** A RedisStore for `await using`; waits until connected and its feed is live. */
export async function openStore(
  url: string,
  options: Partial<RedisStoreOptions> = {},
): Promise<RedisStore & AsyncDisposable> {
  const store = new RedisStore({ url, commandTimeoutMs: 3000, ...options }) as
    & RedisStore
    & AsyncDisposable;
  const feed = new Promise<void>((resolve) => {
    const off = store.subscribe((m) => {
      if (m.type === "feed_ready") {
        off();
        resolve();
      }
    });
  });
  store[Symbol.asyncDispose] = () => store.close();
  await store.connected();
  await feed;
  return store;
}

/** Everything a store's feed says, with a way to wait for a message. */
export class FeedRecorder implements Disposable {
  readonly messages: FeedMessage[] = [];
  #off: () => void;
  #waiters: Array<{ test: (m: FeedMessage) => boolean; resolve: (m: FeedMessage) => void }> = [];

  constructor(store: { subscribe(l: (m: FeedMessage) => void): () => void }) {
    this.#off = store.subscribe((m) => {
      this.messages.push(m);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.test(m)) return true;
        w.resolve(m);
        return false;
      });
    });
  }

  /** The first message recorded (so far, or from now on) that passes `test`. */
  next(test: (m: FeedMessage) => boolean, what: string, timeoutMs = 15_000): Promise<FeedMessage> {
    const seen = this.messages.find(test);
    if (seen) return Promise.resolve(seen);
    return withDeadline(
      new Promise((resolve) => this.#waiters.push({ test, resolve })),
      what,
      timeoutMs,
    );
  }

  [Symbol.dispose](): void {
    this.#off();
  }
}

/** Polls `check` every 25 ms until it is true; fails after `timeoutMs` naming `what`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `promise`, or a rejection naming `what` after `timeoutMs`. */
export async function withDeadline<T>(promise: Promise<T>, what: string, timeoutMs: number) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
