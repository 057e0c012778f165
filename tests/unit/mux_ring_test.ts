/**
 * The mux stream's receive ring (lib/transport/mux/ring.ts) against a plain
 * array model: any interleaving of writes and reads returns the bytes in
 * order, and memory grows only as far as the bytes held need.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { ByteRing } from "../../lib/transport/mux/ring.ts";
import { fuzz } from "../helpers/fuzz.ts";

Deno.test("mux ring: holds nothing until written, and drops its memory on clear", () => {
  const ring = new ByteRing();
  assert.equal(ring.capacity, 0);
  assert.equal(ring.read(new Uint8Array(4)), 0);
  ring.write(new Uint8Array([1, 2, 3]));
  assert.equal(ring.capacity, 16 * 1024);
  assert.equal(ring.clear(), 3);
  assert.equal(ring.capacity, 0);
});

Deno.test("mux ring: wraps and grows, keeping order, like a queue of bytes", () => {
  const op = fc.oneof(
    fc.record({ write: fc.uint8Array({ maxLength: 40_000 }) }),
    fc.record({ read: fc.nat(50_000) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
      const ring = new ByteRing();
      const model: number[] = [];
      let peak = 0;
      for (const o of ops) {
        if ("write" in o) {
          ring.write(o.write);
          model.push(...o.write);
          peak = Math.max(peak, model.length);
        } else {
          const dst = new Uint8Array(o.read);
          const n = ring.read(dst);
          assert.equal(n, Math.min(o.read, model.length));
          assert.deepEqual([...dst.subarray(0, n)], model.splice(0, n));
        }
        assert.equal(ring.size, model.length);
        assert.ok(
          ring.capacity <= Math.max(16 * 1024, 2 * peak),
          "grows at most to twice its peak",
        );
      }
    }),
    fuzz(300),
  );
});

Deno.test("mux ring: a peeked view keeps its bytes while later writes wrap and grow, until skipped", () => {
  const op = fc.oneof(
    fc.record({ write: fc.uint8Array({ minLength: 1, maxLength: 40_000 }) }),
    fc.record({ peek: fc.nat(50_000) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
      const ring = new ByteRing();
      const model: number[] = [];
      // A view held across writes, as a relay holds it while its write is under way.
      let held: { view: Uint8Array; bytes: number[] } | null = null;
      for (const o of ops) {
        if ("write" in o) {
          ring.write(o.write);
          model.push(...o.write);
        } else if (held !== null) {
          assert.deepEqual([...held.view], held.bytes, "the view changed under a write");
          const n = Math.min(o.peek, held.view.length);
          ring.skip(n);
          model.splice(0, n);
          held = null;
        } else {
          const view = ring.peek();
          assert.ok(view.length <= model.length);
          assert.ok(model.length === 0 || view.length > 0, "bytes queued, but none shown");
          assert.deepEqual([...view], model.slice(0, view.length));
          held = { view, bytes: [...view] };
        }
        assert.equal(ring.size, model.length);
      }
      const rest = new Uint8Array(model.length);
      assert.equal(ring.read(rest), model.length);
      assert.deepEqual([...rest], model);
    }),
    fuzz(300),
  );
});

Deno.test("mux ring: a small ring is given back once drained; a grown one stays", () => {
  const ring = new ByteRing();
  ring.write(new Uint8Array(100));
  assert.equal(ring.read(new Uint8Array(60)), 60);
  assert.equal(ring.capacity, 16 * 1024, "kept while bytes wait");
  ring.skip(40);
  assert.equal(ring.capacity, 0, "drained: an idle stream holds no buffer");
  ring.write(new Uint8Array(10));
  assert.equal(ring.read(new Uint8Array(10)), 10);
  assert.equal(ring.capacity, 0);
  ring.write(new Uint8Array(40_000));
  assert.equal(ring.read(new Uint8Array(40_000)), 40_000);
  assert.equal(ring.capacity, 64 * 1024, "a bulk stream's grown ring stays for its next bytes");
});
