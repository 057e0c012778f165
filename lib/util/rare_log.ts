/**
 * Warnings that a flood could repeat thousands of times a second: each kind
 * is logged at most once per interval, so a flood cannot flood the log.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";

/** Logs a warning at most once per `everyMs` per kind. */
export class RareLog {
  #log: Logger;
  #everyMs: number;
  #last = new Map<string, number>();

  constructor(log: Logger, everyMs = 10_000) {
    this.#log = log;
    this.#everyMs = everyMs;
  }

  /** Logs `message` unless a warning of this `kind` was logged within the interval. */
  warn(kind: string, message: string): void {
    const now = Date.now();
    if (now - (this.#last.get(kind) ?? 0) < this.#everyMs) return;
    this.#last.set(kind, now);
    this.#log.warn(message);
  }
}
