/**
 * Traffic counting and sampling (`lib/tunnel/traffic.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { TrafficCounter, TrafficHistory } from "../../lib/tunnel/traffic.ts";

Deno.test("a traffic counter counts live and finished connections", () => {
  const counter = new TrafficCounter();
  const a = counter.open();
  const b = counter.open();
  a.aToB = 10;
  b.bToA = 7;
  assert.deepEqual(counter.bytes(), { bytesIn: 10, bytesOut: 7 });
  counter.close(a);
  counter.close(a); // twice is once
  a.aToB = 999; // after close it no longer counts
  assert.equal(counter.connections, 1);
  assert.equal(counter.total, 2);
  assert.deepEqual(counter.bytes(), { bytesIn: 10, bytesOut: 7 });
});

Deno.test("traffic history samples rates, is bounded, and forgets keys not sampled", () => {
  const history = new TrafficHistory(3);
  const t0 = 1_000_000;
  history.beginRound();
  history.record("g/a", { bytesIn: 0, bytesOut: 0 }, t0);
  history.endRound();
  for (let i = 1; i <= 4; i++) {
    history.beginRound();
    history.record("g/a", { bytesIn: i * 1000, bytesOut: i * 500 }, t0 + i * 1000);
    history.endRound();
  }
  assert.deepEqual(history.series("g/a"), { in: [1000, 1000, 1000], out: [500, 500, 500] });
  assert.equal(history.changedAt("g/a"), t0 + 4000);
  // A counter that starts afresh is no traffic, not a negative rate.
  history.beginRound();
  history.record("g/a", { bytesIn: 0, bytesOut: 0 }, t0 + 5000);
  history.endRound();
  assert.deepEqual(history.series("g/a").in, [1000, 1000, 0]);
  history.beginRound();
  history.endRound();
  assert.deepEqual(history.series("g/a"), { in: [], out: [] });
});
