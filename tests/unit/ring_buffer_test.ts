/**
 * The ring buffer (`lib/util/ring_buffer.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { RingBuffer } from "../../lib/util/ring_buffer.ts";

Deno.test("the ring buffer keeps the newest items in order", () => {
  const ring = new RingBuffer<number>(3);
  assert.deepEqual(ring.toArray(), []);
  for (let i = 1; i <= 5; i++) ring.push(i);
  assert.deepEqual(ring.toArray(), [3, 4, 5]);
  assert.equal(ring.size, 3);
});
