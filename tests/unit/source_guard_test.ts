/**
 * The per-source guard against floods and guessing (`lib/util/source_guard.ts`):
 * handshakes in flight, failed logins, delays and lockout.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DEFAULT_LIMITS } from "../../lib/config/limits.ts";
import { SourceGuard, sourceOf } from "../../lib/util/source_guard.ts";

Deno.test("source guard: free failures, then growing delays, then a lockout that ends", () => {
  let now = 1_000_000;
  const guard = new SourceGuard(
    { ...DEFAULT_LIMITS, authFailures: 7, lockoutSeconds: 60 },
    () => now,
  );
  const delays = Array.from({ length: 6 }, () => guard.failed("198.51.100.7").delayMs);
  assert.deepEqual(delays, [0, 0, 0, 250, 500, 1000]);
  assert.equal(guard.lockedFor("198.51.100.7"), 0);
  assert.deepEqual(guard.failed("198.51.100.7"), { delayMs: 0, lockedOut: true });
  assert.equal(guard.lockedFor("198.51.100.7"), 60);
  assert.equal(guard.lockedFor("198.51.100.8"), 0, "another source is not locked");
  assert.equal(guard.lockedFor("198.51.100.7"), 60);
  now += 60_001;
  assert.equal(guard.lockedFor("198.51.100.7"), 0);
  assert.deepEqual(guard.failed("198.51.100.7"), { delayMs: 0, lockedOut: false }, "counted anew");
  // Delays are capped at 5 s.
  const slow = new SourceGuard({ ...DEFAULT_LIMITS, authFailures: 100 }, () => now);
  let last = 0;
  for (let i = 0; i < 20; i++) last = slow.failed("192.0.2.1").delayMs;
  assert.equal(last, 5000);
});

Deno.test("source guard: handshakes per source, IPv6 counted by /64, and a bounded memory", () => {
  const guard = new SourceGuard({ ...DEFAULT_LIMITS, handshakesPerSource: 2 });
  const a = sourceOf("2001:db8:1:2:aaaa::1");
  assert.equal(a, sourceOf("2001:db8:1:2:bbbb::9"), "one /64, one source");
  assert.notEqual(a, sourceOf("2001:db8:1:3::1"));
  assert.equal(sourceOf("::ffff:192.0.2.4"), "192.0.2.4");
  assert.ok(guard.enter(a) && guard.enter(a));
  assert.equal(guard.enter(a), false);
  guard.leave(a);
  assert.ok(guard.enter(a));
  for (let i = 0; i < 12_000; i++) guard.failed(`10.${i >> 16 & 255}.${i >> 8 & 255}.${i & 255}`);
  assert.ok(guard.tracked <= 10_000, `tracks ${guard.tracked} sources`);
});
