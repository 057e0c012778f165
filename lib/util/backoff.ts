/**
 * Exponential backoff with jitter for reconnecting. Each delay doubles up to
 * a cap; a random half of it is jitter, so a thousand clients cut off by one
 * server restart do not all knock again in the same instant.
 *
 * @module
 */

/** Options for {@linkcode Backoff}. */
export interface BackoffOptions {
  /** First delay in ms. @default 500 */
  initialMs?: number;
  /** Largest delay in ms. @default 30000 */
  maxMs?: number;
  /** A number in [0, 1); replaceable in tests. @default Math.random */
  random?: () => number;
}

/** Yields growing delays: between half and all of min(initial * 2^n, max). */
export class Backoff {
  #initial: number;
  #max: number;
  #random: () => number;
  #attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.#initial = options.initialMs ?? 500;
    this.#max = options.maxMs ?? 30_000;
    this.#random = options.random ?? Math.random;
  }

  /** How many delays were handed out since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The next delay in ms. */
  next(): number {
    const ceiling = Math.min(this.#max, this.#initial * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.round(ceiling / 2 + this.#random() * ceiling / 2);
  }

  /** Starts again from the first delay (after a connection worked). */
  reset(): void {
    this.#attempt = 0;
  }
}

/** Resolves after `ms`, or early (without error) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
