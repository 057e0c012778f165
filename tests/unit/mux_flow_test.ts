/**
 * Receive windows (lib/transport/mux/flow.ts): the peer may send exactly
 * what was granted, a grant is due after a quarter of the window is read,
 * and the window doubles only while the reader keeps up with it.
 */

import assert from "node:assert/strict";
import { ReceiveWindow } from "../../lib/transport/mux/flow.ts";

const KiB = 1024;

Deno.test("mux flow: the peer may send what was granted, not a byte more", () => {
  const w = new ReceiveWindow(256 * KiB, 256 * KiB, 256 * KiB);
  assert.equal(w.receive(256 * KiB), true);
  assert.equal(w.buffered, 256 * KiB);
  assert.equal(w.receive(1), false);
});

Deno.test("mux flow: a grant is due once a quarter of the window is read, and moves the limit", () => {
  const w = new ReceiveWindow(256 * KiB, 256 * KiB, 256 * KiB);
  w.receive(256 * KiB);
  assert.equal(w.consume(63 * KiB), false);
  assert.equal(w.grant(1, 50), 0);
  assert.equal(w.consume(1 * KiB), true);
  assert.equal(w.grant(2, 50), 64 * KiB);
  assert.equal(w.receive(64 * KiB), true);
  assert.equal(w.receive(1), false);
});

Deno.test("mux flow: the window doubles while the reader keeps up, to its maximum", () => {
  const w = new ReceiveWindow(256 * KiB, 256 * KiB, 1024 * KiB);
  let now = 1000;
  const rtt = 10;
  for (let i = 0; i < 10; i++) {
    w.receive(w.window);
    w.consume(w.window);
    now += 1; // a whole window read in a tenth of a round trip
    w.grant(now, rtt);
  }
  assert.equal(w.window, 1024 * KiB);
});

Deno.test("mux flow: a slow reader keeps its window", () => {
  const w = new ReceiveWindow(256 * KiB, 256 * KiB, 16 * 1024 * KiB);
  let now = 1000;
  for (let i = 0; i < 10; i++) {
    w.receive(64 * KiB);
    w.consume(64 * KiB);
    now += 100; // a quarter window per 10 round trips
    w.grant(now, 10);
  }
  assert.equal(w.window, 256 * KiB);
});
