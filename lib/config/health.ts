/**
 * An app's health-check options (`health:` in a group file, `health` on
 * `expose`), their defaults and their check. The client runs the checks
 * (`lib/client/health.ts`).
 *
 * @module
 */

/**
 * Health checks for an app, as {@linkcode ExposeOptions.health} takes them:
 * exactly one of `tcp` and `http`.
 *
 * @example
 * ```ts
 * import type { HealthOptions } from "@burrow/burrow";
 * const health: HealthOptions = { http: "/healthz", interval: 5, fails: 2 };
 * ```
 */
export interface HealthOptions {
  /** Check that the local address accepts a TCP connection. */
  tcp?: boolean;
  /** Check that `GET` of this path (starting with `/`) answers 2xx. */
  http?: string;
  /**
   * Seconds between checks.
   *
   * @default {10}
   */
  interval?: number;
  /**
   * Failures in a row that make the app unhealthy.
   *
   * @default {3}
   */
  fails?: number;
}

/** Default seconds between checks. */
export const DEFAULT_HEALTH_INTERVAL = 10;
/** Default failures in a row before an app is unhealthy. */
export const DEFAULT_HEALTH_FAILS = 3;

/** What is wrong with health options, as a sentence, or undefined. */
export function checkHealthOptions(health: HealthOptions): string | undefined {
  const { tcp, http, interval, fails } = health;
  if ((tcp === true) === (http !== undefined)) {
    return "health: give exactly one of tcp: true and http: /path";
  }
  if (tcp !== undefined && tcp !== true) return "health.tcp: must be true (or leave it out)";
  if (http !== undefined && !/^\/[\x21-\x7e]*$/.test(http)) {
    return "health.http: must be a path starting with / (no spaces or control characters)";
  }
  if (interval !== undefined && !(interval > 0 && interval <= 86_400)) {
    return "health.interval: must be more than 0 and at most 86400 seconds";
  }
  if (fails !== undefined && !(Number.isInteger(fails) && fails >= 1 && fails <= 1000)) {
    return "health.fails: must be a whole number from 1 to 1000";
  }
  return undefined;
}
