/**
 * Reconnect delays from `lib/util/backoff.ts`: exponential growth, jitter within
 * the upper half of each step, the cap, reset, and an abortable sleep.
 */

import assert from "node:assert/strict";
import { Backoff, sleep } from "../../lib/util/backoff.ts";

/** A `random` that returns the given values in turn. */
function scripted(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length] as number;
}

Deno.test("delays double from initialMs at the ceiling of the jitter", () => {
  const b = new Backoff({ initialMs: 100, maxMs: 30_000, random: () => 0.999999 });
  const got = Array.from({ length: 11 }, () => b.next());
  assert.deepEqual(got, [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
  assert.equal(b.attempt, 11);
});

Deno.test("delays are half the ceiling when the jitter is 0", () => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
  assert.deepEqual(Array.from({ length: 6 }, () => b.next()), [50, 100, 200, 400, 500, 500]);
});

Deno.test("jitter scales linearly within [ceiling/2, ceiling]", () => {
  const b = new Backoff({ initialMs: 1000, maxMs: 8000, random: scripted(0.5, 0.25, 0.75, 0.1) });
  // ceilings 1000, 2000, 4000, 8000
  assert.deepEqual([b.next(), b.next(), b.next(), b.next()], [750, 1250, 3500, 4400]);
});

Deno.test("defaults: 500 ms first, capped at 30 s, always within [ceiling/2, ceiling]", () => {
  const b = new Backoff();
  const first = b.next();
  assert.ok(first >= 250 && first <= 500, `first delay ${first}`);
  let ceiling = 500;
  for (let i = 1; i < 200; i++) {
    ceiling = Math.min(30_000, ceiling * 2);
    const d = b.next();
    assert.ok(d >= ceiling / 2 && d <= ceiling, `delay ${i} = ${d}, ceiling ${ceiling}`);
    assert.ok(d <= 30_000);
  }
});

Deno.test("the jitter actually varies with the default random source", () => {
  const seen = new Set<number>();
  for (let i = 0; i < 50; i++) {
    const b = new Backoff({ initialMs: 10_000, maxMs: 10_000 });
    seen.add(b.next());
  }
  assert.ok(seen.size > 10, `only ${seen.size} distinct delays`);
  for (const d of seen) assert.ok(d >= 5000 && d <= 10_000);
});

Deno.test("many attempts neither overflow nor exceed the cap", () => {
  const b = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => 0.999999 });
  let last = 0;
  for (let i = 0; i < 10_000; i++) last = b.next();
  assert.equal(last, 30_000);
  assert.ok(Number.isFinite(last));
});

Deno.test("reset starts again from the first delay", () => {
  const b = new Backoff({ initialMs: 100, maxMs: 10_000, random: () => 0 });
  b.next();
  b.next();
  b.next();
  assert.equal(b.attempt, 3);
  b.reset();
  assert.equal(b.attempt, 0);
  assert.deepEqual([b.next(), b.next()], [50, 100]);
});

Deno.test("sleep waits for about the given time", async () => {
  const began = performance.now();
  await sleep(40);
  const took = performance.now() - began;
  assert.ok(took >= 35 && took < 1000, `slept ${took} ms`);
});

Deno.test("sleep resolves early when its signal aborts", async () => {
  const controller = new AbortController();
  const began = performance.now();
  setTimeout(() => controller.abort(), 20);
  await sleep(10_000, controller.signal);
  const took = performance.now() - began;
  assert.ok(took >= 15 && took < 1000, `slept ${took} ms`);
});

Deno.test("sleep with an already aborted signal resolves at once", async () => {
  const began = performance.now();
  await sleep(10_000, AbortSignal.abort());
  assert.ok(performance.now() - began < 100);
});

Deno.test("sleep removes its abort listener when the time is up", async () => {
  const controller = new AbortController();
  let added = 0;
  let removed = 0;
  const signal = controller.signal;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = ((...args: Parameters<typeof add>) => {
    added++;
    add(...args);
  }) as typeof signal.addEventListener;
  signal.removeEventListener = ((...args: Parameters<typeof remove>) => {
    removed++;
    remove(...args);
  }) as typeof signal.removeEventListener;
  await sleep(5, signal);
  assert.equal(added, 1);
  assert.equal(removed, 1, "a long-lived signal does not collect listeners");
});
