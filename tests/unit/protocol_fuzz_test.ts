/**
 * Property-based fuzzing (fast-check) of `lib/protocol/protocol.ts`: the frame
 * reader against chunked, truncated and random byte streams, and both
 * message validators against arbitrary JSON. Fixed seed by default; see
 * `tests/helpers/fuzz.ts` for `FC_SEED` and `FC_RUNS`.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { ProtocolError } from "../../lib/util/errors.ts";
import {
  type ByteReader,
  type ClientMessage,
  encodeFrame,
  FrameReader,
  MAX_FRAME_BYTES,
  parseClientMessage,
  parseServerMessage,
  type ServerMessage,
} from "../../lib/protocol/protocol.ts";
import { assertPrototypeClean, fuzz, prototypeSnapshot } from "../helpers/fuzz.ts";
import {
  ALL_TYPES,
  BAD_FIELD_VALUES,
  CLIENT_MESSAGES,
  clientMessage,
  SERVER_MESSAGES,
  serverMessage,
} from "../helpers/messages.ts";

// ---- a scripted byte source ------------------------------------------------

/**
 * Hands out `bytes` in reads of the given sizes (cycled, and never more than
 * the reader asks for), then EOF once. Records what the reader asked for, and
 * fails loudly on a read after EOF or into an empty buffer (either would spin).
 * With `stall`, the end of the bytes is not EOF but a read that never settles.
 */
class ChunkSource implements ByteReader {
  #bytes: Uint8Array;
  #sizes: readonly number[];
  #i = 0;
  #eof = false;
  #stall: boolean;
  pos = 0;
  reads = 0;
  /** The largest buffer the reader offered to a read: its buffer can be no smaller. */
  largestAsk = 0;

  constructor(bytes: Uint8Array, sizes: readonly number[], stall = false) {
    this.#bytes = bytes;
    this.#sizes = sizes.length > 0 ? sizes : [1];
    this.#stall = stall;
  }

  read(p: Uint8Array): Promise<number | null> {
    this.reads++;
    this.largestAsk = Math.max(this.largestAsk, p.length);
    if (p.length === 0) throw new Error("read into an empty buffer");
    if (this.pos === this.#bytes.length) {
      if (this.#stall) return new Promise(() => {});
      if (this.#eof) throw new Error("read again after EOF");
      this.#eof = true;
      return Promise.resolve(null);
    }
    const size = this.#sizes[this.#i++ % this.#sizes.length] as number;
    const n = Math.min(size, p.length, this.#bytes.length - this.pos);
    p.set(this.#bytes.subarray(this.pos, this.pos + n));
    this.pos += n;
    return Promise.resolve(n);
  }

  /** The bytes not yet handed out. */
  rest(): Uint8Array {
    return this.#bytes.slice(this.pos);
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function prefix(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

/** How reads are cut: one byte at a time, small pieces (splitting prefixes), or large ones. */
const chunking: fc.Arbitrary<number[]> = fc.oneof(
  fc.constant([1]).map((s) => [...s]),
  fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 8 }),
  fc.array(fc.integer({ min: 1, max: 3 * MAX_FRAME_BYTES }), { minLength: 1, maxLength: 8 }),
);

/** A frame whose JSON body is exactly `n` bytes (n >= 10). */
function paddedFrame(n: number): Uint8Array {
  const body = `{"pad":"${"x".repeat(n - 10)}"}`;
  return encodeFrame(JSON.parse(body) as ClientMessage);
}

/** Valid frames from the project's encoder, now and then a large one up to the cap. */
const frameArb: fc.Arbitrary<{ value: unknown; frame: Uint8Array }> = fc.oneof(
  { weight: 8, arbitrary: fc.oneof(serverMessage, clientMessage) },
  { weight: 1, arbitrary: fc.jsonValue() },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.integer({ min: 10, max: 5000 }),
      fc.integer({ min: MAX_FRAME_BYTES - 64, max: MAX_FRAME_BYTES }),
    ).map((n) => JSON.parse(new TextDecoder().decode(paddedFrame(n).subarray(4)))),
  },
).map((value) => ({
  value: JSON.parse(JSON.stringify(value)) as unknown,
  frame: encodeFrame(value as ServerMessage),
}));

type Expected = { value: unknown; size: number } | { error: string };

/** What a correct reader yields for `bytes`, read to the end: values, then null or an error. */
function expectedReads(bytes: Uint8Array): Expected[] {
  const out: Expected[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  while (true) {
    const left = bytes.length - pos;
    if (left === 0) return [...out, { value: null, size: 0 }];
    if (left < 4) return [...out, { error: "connection closed mid-frame" }];
    const length = view.getUint32(pos);
    if (length > MAX_FRAME_BYTES) {
      return [...out, {
        error: `frame of ${length} bytes exceeds the ${MAX_FRAME_BYTES}-byte cap`,
      }];
    }
    if (left < 4 + length) return [...out, { error: "connection closed mid-frame" }];
    const body = bytes.subarray(pos + 4, pos + 4 + length);
    try {
      const text = new TextDecoder("utf-8", { fatal: true }).decode(body);
      out.push({ value: JSON.parse(text), size: 4 + length });
    } catch {
      return [...out, { error: "frame is not valid UTF-8 JSON" }];
    }
    pos += 4 + length;
  }
}

/** Reads `source` with `reader` to its end and checks every outcome against `expectedReads`. */
async function readAllAsExpected(bytes: Uint8Array, sizes: number[]): Promise<void> {
  const source = new ChunkSource(bytes, sizes);
  const reader = new FrameReader(source);
  let consumed = 0;
  for (const want of expectedReads(bytes)) {
    if ("error" in want) {
      await assert.rejects(reader.read(), (err) => {
        assert.ok(err instanceof ProtocolError, `not a ProtocolError: ${err}`);
        assert.equal(err.message, want.error);
        return true;
      });
    } else {
      const got = await reader.read();
      assert.deepEqual(got, want.value);
      consumed += want.size;
    }
    // Never more than one frame's worth buffered, and never a larger buffer.
    assert.ok(source.largestAsk <= MAX_FRAME_BYTES + 4, `asked for ${source.largestAsk} bytes`);
    assert.ok(source.pos - consumed <= MAX_FRAME_BYTES + 4 || "error" in want);
  }
  // Each frame takes at least 4 bytes, and each read at least one: the reader cannot spin.
  assert.ok(source.reads <= bytes.length + 2, `${source.reads} reads for ${bytes.length} bytes`);
}

// ---- the frame reader --------------------------------------------------------

Deno.test("fuzz: frames in any chunking decode to the same values, leftover bytes handed back", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(frameArb, { maxLength: 8 }),
      fc.uint8Array({ maxLength: 64 }),
      chunking,
      async (frames, trailing, sizes) => {
        const source = new ChunkSource(concat([...frames.map((f) => f.frame), trailing]), sizes);
        const reader = new FrameReader(source);
        for (const { value } of frames) assert.deepEqual(await reader.read(), value);
        // Whatever the reader took past the last frame, plus what it left unread, is the rest.
        assert.deepEqual(concat([reader.takeBuffered(), source.rest()]), trailing);
        assert.ok(source.largestAsk <= MAX_FRAME_BYTES + 4, `asked for ${source.largestAsk}`);
      },
    ),
    fuzz(150),
  );
});

Deno.test("fuzz: valid messages survive encode, chunked reads and validation unchanged", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.oneof(
          serverMessage.map((m) => ({ from: "server" as const, m })),
          clientMessage.map((m) => ({ from: "client" as const, m })),
        ),
        { minLength: 1, maxLength: 6 },
      ),
      chunking,
      async (messages, sizes) => {
        const reader = new FrameReader(
          new ChunkSource(concat(messages.map(({ m }) => encodeFrame(m))), sizes),
        );
        for (const { from, m } of messages) {
          const raw = await reader.read();
          const parsed = from === "server" ? parseServerMessage(raw) : parseClientMessage(raw);
          assert.deepEqual(parsed, m);
        }
        assert.equal(await reader.read(), null);
      },
    ),
    fuzz(300),
  );
});

/** Bytes that look a little like frames: valid ones, wrong bodies, wild prefixes, noise. */
const hostileBytes: fc.Arbitrary<Uint8Array> = fc.array(
  fc.oneof(
    frameArb.map((f) => f.frame),
    fc.uint8Array({ maxLength: 40 }).map((body) => concat([prefix(body.length), body])),
    fc.string({ unit: "binary", maxLength: 40 }).map((s) => {
      const body = new TextEncoder().encode(s);
      return concat([prefix(body.length), body]);
    }),
    fc.tuple(
      fc.oneof(
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.integer({ min: MAX_FRAME_BYTES - 2, max: MAX_FRAME_BYTES + 2 }),
        fc.constantFrom(0, 1, 0xffff_ffff, 0x8000_0000),
      ),
      fc.uint8Array({ maxLength: 16 }),
    ).map(([n, rest]) => concat([prefix(n), rest])),
    fc.uint8Array({ maxLength: 32 }),
  ),
  { maxLength: 6 },
).map(concat);

Deno.test("fuzz: arbitrary bytes end in frames, a clean EOF or a ProtocolError, nothing else", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(hostileBytes, fc.uint8Array({ maxLength: 300 })),
      chunking,
      readAllAsExpected,
    ),
    fuzz(400),
  );
});

Deno.test("fuzz: a valid stream cut anywhere yields its whole frames, then EOF or an error", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(frameArb, { minLength: 1, maxLength: 5 }),
      // Anywhere, or a few bytes from a frame's start: inside a length prefix.
      fc.oneof(
        fc.double({ min: 0, max: 1, noNaN: true }).map((where) => ({ where, frame: -1, off: 0 })),
        fc.record({ where: fc.constant(0), frame: fc.nat(), off: fc.integer({ min: -2, max: 5 }) }),
      ),
      chunking,
      async (frames, { where, frame, off }, sizes) => {
        const stream = concat(frames.map((f) => f.frame));
        const starts = frames.map((_, i) =>
          frames.slice(0, i).reduce((n, f) => n + f.frame.length, 0)
        );
        const cut = frame < 0
          ? Math.floor(where * stream.length)
          : Math.min(stream.length, Math.max(0, (starts[frame % starts.length] as number) + off));
        const reader = new FrameReader(new ChunkSource(stream.subarray(0, cut), sizes));
        let end = 0;
        for (const { value, frame } of frames) {
          if (end + frame.length > cut) {
            // The cut frame: EOF if nothing of it arrived, a ProtocolError otherwise.
            if (end === cut) assert.equal(await reader.read(), null);
            else await assert.rejects(reader.read(), ProtocolError);
            return;
          }
          assert.deepEqual(await reader.read(), value);
          end += frame.length;
        }
        assert.equal(await reader.read(), null);
      },
    ),
    fuzz(300),
  );
});

Deno.test("fuzz: an oversize length prefix is refused without waiting for its body", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(frameArb, { maxLength: 3 }),
      fc.oneof(
        fc.integer({ min: MAX_FRAME_BYTES + 1, max: 0xffff_ffff }),
        fc.constantFrom(MAX_FRAME_BYTES + 1, 0xffff_ffff),
      ),
      fc.uint8Array({ maxLength: 16 }),
      chunking,
      async (frames, length, someBody, sizes) => {
        // The body never comes: the source stalls after what is given. A reader that
        // waited for it would time out instead of refusing.
        const source = new ChunkSource(
          concat([...frames.map((f) => f.frame), prefix(length), someBody]),
          sizes,
          true,
        );
        const reader = new FrameReader(source);
        for (const { value } of frames) assert.deepEqual(await reader.read(), value);
        await assert.rejects(reader.read(2_000), (err) => {
          assert.ok(err instanceof ProtocolError);
          assert.match(err.message, /exceeds the 65536-byte cap/);
          return true;
        });
        assert.ok(source.largestAsk <= MAX_FRAME_BYTES + 4);
      },
    ),
    fuzz(200),
  );
});

// ---- the validators ------------------------------------------------------------

const parsers = [
  { from: "server", parse: parseServerMessage, arbs: SERVER_MESSAGES },
  { from: "client", parse: parseClientMessage, arbs: CLIENT_MESSAGES },
] as const;

/**
 * Either a message (which then validates again to itself, and fits the type
 * tags the protocol has) or a one-line `ProtocolError`; never anything else.
 */
function acceptsOrRejects(parse: (v: unknown) => unknown, value: unknown): "ok" | "rejected" {
  let parsed: unknown;
  try {
    parsed = parse(value);
  } catch (err) {
    assert.ok(err instanceof ProtocolError, `threw ${err instanceof Error ? err.stack : err}`);
    assert.match(err.message, /^invalid (server|client) message of type /);
    assert.ok(!/[\r\n]/.test(err.message) && err.message.length < 120, err.message);
    return "rejected";
  }
  const type = (parsed as { type?: unknown }).type;
  assert.ok(typeof type === "string" && ALL_TYPES.includes(type), `accepted type ${type}`);
  assert.deepEqual(parse(JSON.parse(JSON.stringify(parsed))), parsed);
  return "ok";
}

/** Keys worth trying on hostile objects: the ones JavaScript treats specially, and ours. */
const specialKey = fc.constantFrom(
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "toJSON",
  "type",
  "id",
  "app",
  "group",
  "polluted",
);

/**
 * JSON text, built by hand so that objects can carry keys like `__proto__`
 * as JSON.parse gives them (own properties), as they come off the wire.
 */
const wireJsonText: fc.Arbitrary<string> =
  fc.letrec<{ value: string; array: string; object: string }>(
    (tie) => ({
      value: fc.oneof(
        { depthSize: "small", maxDepth: 5 },
        fc.jsonValue({ maxDepth: 1 }).map((v) => JSON.stringify(v)),
        fc.constantFrom(...ALL_TYPES).map((t) => JSON.stringify(t)),
        tie("array"),
        tie("object"),
      ),
      array: fc.array(tie("value"), { maxLength: 4 }).map((xs) => `[${xs.join(",")}]`),
      object: fc.array(fc.tuple(fc.oneof(specialKey, fc.string()), tie("value")), { maxLength: 5 })
        .map((es) => `{${es.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`),
    }),
  ).value;

/** `{"type": T, ...}` with T a real tag (or anything) and random fields. */
const taggedText = fc.tuple(
  fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...ALL_TYPES).map((t) => JSON.stringify(t)) },
    { weight: 1, arbitrary: wireJsonText },
  ),
  fc.array(
    fc.tuple(fc.oneof(specialKey, fc.constantFrom(...Object.keys(BAD_FIELD_VALUES))), wireJsonText),
    {
      maxLength: 6,
    },
  ),
).map(([type, fields]) =>
  `{${[`"type":${type}`, ...fields.map(([k, v]) => `${JSON.stringify(k)}:${v}`)].join(",")}}`
);

/** Deep nesting and huge strings, within what one 64 KiB frame can carry. */
const extremeText = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 20_000 }), fc.constantFrom("[]", "{}")).map(([depth, kind]) =>
    kind === "[]"
      ? `{"type":${"[".repeat(depth)}${"]".repeat(depth)}}`
      : `{"type":"hello","group":${'{"a":'.repeat(depth)}1${"}".repeat(depth)}}`
  ),
  fc.tuple(
    fc.constantFrom(...ALL_TYPES),
    fc.constantFrom("message", "app", "type", "server"),
    fc.integer({ min: 0, max: MAX_FRAME_BYTES }),
  ).map(([type, key, n]) =>
    key === "type"
      ? JSON.stringify({ type: "x".repeat(n) })
      : `{"type":${JSON.stringify(type)},${JSON.stringify(key)}:${
        JSON.stringify("é".repeat(n / 2))
      }}`
  ),
);

Deno.test("fuzz: validators accept a well-typed message or throw ProtocolError, for any JSON", () => {
  const before = prototypeSnapshot();
  let accepted = 0;
  fc.assert(
    fc.property(
      fc.oneof(fc.jsonValue().map((v) => JSON.stringify(v)), wireJsonText, taggedText),
      (text) => {
        const value: unknown = JSON.parse(text);
        for (const { parse } of parsers) {
          if (acceptsOrRejects(parse, value) === "ok") accepted++;
        }
      },
    ),
    fuzz(2000),
  );
  assertPrototypeClean(before);
  // Random fields under a real tag do hit a valid message now and then (bye, started...).
  assert.ok(accepted > 0, "no random value was ever accepted: the generator is too narrow");
});

Deno.test("fuzz: validators survive deep nesting and huge strings", () => {
  const before = prototypeSnapshot();
  fc.assert(
    fc.property(extremeText, (text) => {
      const value: unknown = JSON.parse(text);
      for (const { parse } of parsers) acceptsOrRejects(parse, value);
    }),
    fuzz(60),
  );
  assertPrototypeClean(before);
});

Deno.test("fuzz: valid messages mutated (fields dropped, replaced, added) never crash a validator", () => {
  const before = prototypeSnapshot();
  fc.assert(
    fc.property(
      fc.oneof(serverMessage, clientMessage),
      fc.array(fc.tuple(fc.oneof(specialKey, fc.string()), fc.option(wireJsonText)), {
        maxLength: 4,
      }),
      (message, edits) => {
        // Through JSON text, so that a `__proto__` edit is an own key as on the wire.
        const entries = Object.entries(message).map(([k, v]) => [k, JSON.stringify(v)]);
        for (const [key, value] of edits) {
          const i = entries.findIndex(([k]) => k === key);
          if (value === null) {
            if (i >= 0) entries.splice(i, 1);
          } else if (i >= 0) (entries[i] as string[])[1] = value;
          else entries.push([key, value]);
        }
        const text = `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;
        const value: unknown = JSON.parse(text);
        for (const { parse } of parsers) acceptsOrRejects(parse, value);
      },
    ),
    fuzz(1500),
  );
  assertPrototypeClean(before);
});

for (const { from, parse, arbs } of parsers) {
  const any = fc.oneof(...Object.values<fc.Arbitrary<{ type: string }>>(arbs));

  Deno.test(`fuzz: every valid ${from} message round-trips through JSON and validation`, () => {
    fc.assert(
      fc.property(any, (message) => {
        assert.deepEqual(parse(JSON.parse(JSON.stringify(message))), message);
      }),
      fuzz(1000),
    );
  });

  Deno.test(`fuzz: ${from} messages with one field out of range are rejected`, () => {
    const fieldAndBadValue = any.chain((message) => {
      const fields = Object.keys(message).filter((k) => k !== "type");
      for (const f of fields) {
        assert.ok(f in BAD_FIELD_VALUES, `${message.type}.${f} has no out-of-range values listed`);
      }
      if (fields.length === 0) {
        return fc.constant({ message, field: "", bad: undefined as unknown });
      }
      return fc.constantFrom(...fields).chain((field) =>
        (BAD_FIELD_VALUES[field] as fc.Arbitrary<unknown>).map((bad) => ({ message, field, bad }))
      );
    });
    fc.assert(
      fc.property(fieldAndBadValue, ({ message, field, bad }) => {
        fc.pre(field !== "");
        const broken = JSON.parse(JSON.stringify({ ...message, [field]: bad })) as unknown;
        assert.throws(
          () => parse(broken),
          ProtocolError,
          `accepted ${field}: ${JSON.stringify(bad)}`,
        );
      }),
      fuzz(1500),
    );
  });
}

Deno.test("fuzz: every message type has an arbitrary, and every generated type validates", () => {
  // The tables are typed from the schemas; this checks the run-time side as well.
  for (const { parse, arbs } of parsers) {
    for (const [type, arb] of Object.entries<fc.Arbitrary<{ type: string }>>(arbs)) {
      const [sample] = fc.sample(arb, { seed: 1, numRuns: 1 });
      assert.equal(sample?.type, type);
      assert.equal((parse(sample) as { type: string }).type, type);
    }
  }
});
