/**
 * Per-source bookkeeping behind the login defences: failed logins with a
 * growing delay and a lockout, and connections in their handshake. A source
 * is an IPv4 address, or the /64 an IPv6 address lies in (one host usually
 * holds a whole /64). Pure state, no I/O: the control port and the
 * dashboard share one guard.
 *
 * @module
 */

import { parseIp } from "./cidr.ts";

/** The limits a guard applies (the server's `limits.*` of the same names). */
export interface GuardLimits {
  /** Connections in their handshake from one source. */
  handshakesPerSource: number;
  /** Failed logins from one source before it is locked out. */
  authFailures: number;
  /** How long a lockout lasts, and how long failures are remembered. */
  lockoutSeconds: number;
}

/** Failures before the answers start to slow down. */
const FREE_FAILURES = 3;
/** The first delay, doubled with each failure after that. */
const FIRST_DELAY_MS = 250;
/** The longest delay before a failure is answered. */
const MAX_DELAY_MS = 5_000;
/** Sources tracked at most; the oldest are forgotten first. */
const MAX_SOURCES = 10_000;

/** A source's address as the guard counts it. */
export function sourceOf(hostname: string): string {
  const bytes = parseIp(hostname);
  if (bytes === undefined || bytes.length === 4) return bytes ? [...bytes].join(".") : hostname;
  const hex = [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.match(/.{4}/g)!.join(":")}::/64`;
}

interface Record {
  failures: number;
  firstAt: number;
  lockedUntil: number;
}

/**
 * Counts failed logins and handshakes in flight per source. Failures after
 * the first few are answered later and later; past `authFailures` within
 * `lockoutSeconds` the source is locked out for `lockoutSeconds`. Successes
 * in between do not reset the count.
 */
export class SourceGuard {
  #limits: GuardLimits;
  #now: () => number;
  #failures = new Map<string, Record>();
  #inFlight = new Map<string, number>();

  constructor(limits: GuardLimits, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  /** Counts a handshake from `source`; false when it already has its limit in flight. */
  enter(source: string): boolean {
    const n = this.#inFlight.get(source) ?? 0;
    if (n >= this.#limits.handshakesPerSource) return false;
    this.#inFlight.set(source, n + 1);
    return true;
  }

  /** Ends a handshake counted by `enter`. */
  leave(source: string): void {
    const n = (this.#inFlight.get(source) ?? 1) - 1;
    if (n <= 0) this.#inFlight.delete(source);
    else this.#inFlight.set(source, n);
  }

  /** Seconds the source stays locked out, or 0. */
  lockedFor(source: string): number {
    const record = this.#failures.get(source);
    if (record === undefined) return 0;
    const left = record.lockedUntil - this.#now();
    return left > 0 ? Math.ceil(left / 1000) : 0;
  }

  /**
   * Records a failed login. Failures age out with the window only; a
   * successful login forgives none, or anyone holding one valid token (their
   * own group's, or the shared one) could log in between guesses at another
   * group's token and never be slowed down or locked out. Returns how long to wait before answering it,
   * and whether this failure locked the source out.
   */
  failed(source: string): { delayMs: number; lockedOut: boolean } {
    const now = this.#now();
    const window = this.#limits.lockoutSeconds * 1000;
    let record = this.#failures.get(source);
    if (record === undefined || (now - record.firstAt > window && record.lockedUntil <= now)) {
      record = { failures: 0, firstAt: now, lockedUntil: 0 };
    }
    this.#failures.delete(source); // re-inserted last: the map's order is oldest first
    this.#failures.set(source, record);
    if (this.#failures.size > MAX_SOURCES) {
      const oldest = this.#failures.keys().next().value;
      if (oldest !== undefined) this.#failures.delete(oldest);
    }
    record.failures++;
    if (record.failures >= this.#limits.authFailures && record.lockedUntil <= now) {
      record.lockedUntil = now + window;
      return { delayMs: 0, lockedOut: true };
    }
    const over = record.failures - FREE_FAILURES;
    const delayMs = over <= 0 ? 0 : Math.min(FIRST_DELAY_MS * 2 ** (over - 1), MAX_DELAY_MS);
    return { delayMs, lockedOut: false };
  }

  /** Sources tracked now (for tests and the memory bound). */
  get tracked(): number {
    return this.#failures.size;
  }
}

/** The refusal a locked-out source gets, for the control port and the dashboard alike. */
export function lockedOutMessage(source: string, seconds: number): string {
  return `too many failed logins from ${source}: locked out for ${seconds}s more`;
}
