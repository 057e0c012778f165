/**
 * `parseWorkHeader`'s hand-written check of a `start` (the hot path, one per
 * user connection) against the `start` schema it stands in for: for values
 * near a valid `start`, both accept the same ones and give the same value,
 * and what the schema refuses is refused with a `ProtocolError`.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { parseWorkHeader, start } from "../../lib/protocol/work.ts";
import { ProtocolError } from "../../lib/util/errors.ts";
import { fuzz } from "../helpers/fuzz.ts";

/** Each field: a valid value mostly, else something just off, or another type. */
const off = <T>(good: fc.Arbitrary<T>, ...bad: fc.Arbitrary<unknown>[]) =>
  fc.oneof({ weight: 6, arbitrary: good }, ...bad.map((arbitrary) => ({ weight: 1, arbitrary })));

const anything = fc.oneof(fc.constant(null), fc.boolean(), fc.string(), fc.double(), fc.object());
const addr = off(
  fc.record({
    hostname: off(fc.string({ maxLength: 64 }), fc.string({ minLength: 65, maxLength: 70 })),
    port: off(fc.integer({ min: 0, max: 65535 }), fc.constantFrom(-1, 65536, 1.5, NaN), anything),
  }),
  anything,
);
const startLike = fc.record(
  {
    type: off(fc.constant("start"), fc.constantFrom("udp_flow", "Start", "")),
    id: off(
      fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      fc.constantFrom(-1, 0.5, Number.MAX_SAFE_INTEGER + 1, Infinity, "1"),
    ),
    app: off(fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,62}$/), fc.constantFrom("", "A", "-x")),
    user: off(fc.string({ maxLength: 1024 }), fc.string({ minLength: 1025, maxLength: 1030 })),
    source: addr,
    destination: addr,
    answer: fc.constantFrom("lazy", "eager", 1),
    extra: fc.string(),
  },
  { requiredKeys: ["type", "id", "app", "user", "source", "destination"] },
);

Deno.test("the quick start check accepts and gives exactly what the start schema does", () => {
  let accepted = 0;
  fc.assert(
    fc.property(startLike, (value) => {
      const schema = start.safeParse(value);
      if (schema.success) {
        accepted++;
        assert.deepEqual(parseWorkHeader(value), schema.data);
      } else {
        assert.throws(() => parseWorkHeader(value), ProtocolError);
      }
    }),
    fuzz(3000),
  );
  assert.ok(accepted > 100, `only ${accepted} valid values were generated`);
});

Deno.test("a start's unknown keys are dropped, as the schema drops them", () => {
  const value = {
    type: "start",
    id: 7,
    app: "web",
    user: "1.2.3.4:5",
    source: { hostname: "1.2.3.4", port: 5, x: 1 },
    destination: { hostname: "127.0.0.1", port: 80 },
    answer: "lazy",
    later: true,
  };
  assert.deepEqual(parseWorkHeader(value), start.parse(value));
  assert.equal("later" in parseWorkHeader(value), false);
});
