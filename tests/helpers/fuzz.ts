/**
 * Shared settings for the property-based (fast-check) tests. Every property
 * runs from a fixed seed so CI is reproducible; `FC_SEED` picks another seed
 * and `FC_RUNS` sets the number of runs of every property, for long runs:
 *
 * ```sh
 * FC_RUNS=20000 FC_SEED=$RANDOM deno test -A tests/unit/protocol_fuzz_test.ts tests/unit/config_fuzz_test.ts
 * ```
 *
 * A failing property prints its seed, the path to the shrunk counterexample
 * and the counterexample itself, which replays with `FC_SEED` (and the
 * `path` parameter given in the report).
 *
 * @module
 */

import type fc from "fast-check";

/** The seed used when `FC_SEED` is not set. */
export const DEFAULT_SEED = 0x6275_7277;

function envNumber(name: string): number | undefined {
  let text: string | undefined;
  try {
    text = Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env: the defaults
  }
  if (text === undefined || text.trim() === "") return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got "${text}"`);
  return n;
}

/** `FC_RUNS` when set: it replaces every property's default run count. */
export const RUNS_OVERRIDE = envNumber("FC_RUNS");

/** The seed every property starts from. */
export const SEED = envNumber("FC_SEED") ?? DEFAULT_SEED;

/** fast-check parameters for a property that runs `defaultRuns` times in the normal suite. */
export function fuzz(defaultRuns: number): fc.Parameters<unknown> {
  return { seed: SEED, numRuns: RUNS_OVERRIDE ?? defaultRuns };
}

/** Own property names of `Object.prototype`, to check that no run polluted it. */
export function prototypeSnapshot(): string[] {
  return Object.getOwnPropertyNames(Object.prototype).sort();
}

/** Throws if `Object.prototype` gained or lost a property since `before`. */
export function assertPrototypeClean(before: string[]): void {
  const after = prototypeSnapshot();
  if (after.join(",") !== before.join(",")) {
    throw new Error(`Object.prototype changed: ${before.join(",")} -> ${after.join(",")}`);
  }
  const probe = {} as Record<string, unknown>;
  for (const key of ["polluted", "token", "type", "isAdmin", "group", "server"]) {
    if (probe[key] !== undefined) throw new Error(`Object.prototype.${key} is set`);
  }
}
