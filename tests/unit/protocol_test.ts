/**
 * The frame codec and message validators of `lib/protocol/protocol.ts`, driven from
 * memory: a scripted reader hands out exactly the chunks a test chooses, so
 * the reader's handling of split, merged, truncated and oversize frames is
 * checked without sockets.
 */

import assert from "node:assert/strict";
import { ProtocolError } from "../../lib/util/errors.ts";
import {
  type ByteReader,
  type ByteWriter,
  type ClientMessage,
  encodeFrame,
  FrameReader,
  FrameWriter,
  MAX_FRAME_BYTES,
  parseClientControl,
  parseClientMessage,
  parseServerMessage,
  parseStart,
  parseWorkHeader,
  PROTOCOL_VERSION,
  type ServerMessage,
  versionMismatch,
} from "../../lib/protocol/protocol.ts";

const encoder = new TextEncoder();

/** Hands out the given chunks one per read (splitting one if `p` is smaller), then EOF. */
class ChunkReader implements ByteReader {
  #chunks: Uint8Array[];
  reads = 0;
  delivered = 0;
  constructor(chunks: Uint8Array[]) {
    this.#chunks = chunks.map((c) => c.slice());
  }
  read(p: Uint8Array): Promise<number | null> {
    this.reads++;
    const chunk = this.#chunks.shift();
    if (chunk === undefined) return Promise.resolve(null);
    const n = Math.min(chunk.length, p.length);
    p.set(chunk.subarray(0, n));
    if (n < chunk.length) this.#chunks.unshift(chunk.subarray(n));
    this.delivered += n;
    return Promise.resolve(n);
  }
}

/** A reader whose reads never settle: a silent peer. */
class SilentReader implements ByteReader {
  reads = 0;
  read(_p: Uint8Array): Promise<number | null> {
    this.reads++;
    return new Promise(() => {});
  }
}

/** Accepts at most one byte per write, yielding between writes, and records all. */
class OneByteWriter implements ByteWriter {
  bytes: number[] = [];
  async write(p: Uint8Array): Promise<number> {
    // Yield to other tasks between bytes so that unserialised writers would interleave.
    await Promise.resolve();
    await Promise.resolve();
    if (p.length === 0) return 0;
    this.bytes.push(p[0] as number);
    return 1;
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A frame with an arbitrary body (not necessarily JSON). */
function rawFrame(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

function lengthPrefix(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

const HEX64 = "ab".repeat(32);
const HEX32 = "0f".repeat(16);

// ---- codec -----------------------------------------------------------------

Deno.test("encodeFrame writes a big-endian length then the UTF-8 JSON", () => {
  const frame = encodeFrame({ type: "shutdown", reason: "é" });
  const json = '{"type":"shutdown","reason":"é"}';
  const body = encoder.encode(json);
  assert.equal(body.length, json.length + 1); // é is two bytes: length is in bytes
  assert.deepEqual([...frame.subarray(0, 4)], [0, 0, 0, body.length]);
  assert.deepEqual(frame.subarray(4), body);
});

Deno.test("encodeFrame refuses a body over MAX_FRAME_BYTES", () => {
  assert.throws(
    () => encodeFrame({ type: "shutdown", reason: "x".repeat(MAX_FRAME_BYTES) }),
    (err) => err instanceof ProtocolError && /exceeds the 65536-byte cap/.test(err.message),
  );
});

Deno.test("FrameReader reads a frame delivered one byte per read", async () => {
  const messages: ClientMessage[] = [
    { type: "ping", seq: 7 },
    { type: "expose", id: 3, app: "ssh", port: 6022, hint: 6000 },
  ];
  const bytes = concat(...messages.map(encodeFrame));
  const chunks = [...bytes].map((b) => Uint8Array.of(b));
  const src = new ChunkReader(chunks);
  const reader = new FrameReader(src);
  assert.deepEqual(await reader.read(), messages[0]);
  assert.deepEqual(await reader.read(), messages[1]);
  assert.equal(await reader.read(), null);
  assert.equal(src.reads, bytes.length + 1);
  assert.equal(src.delivered, bytes.length);
});

Deno.test("FrameReader reads several frames from one read", async () => {
  const messages: ServerMessage[] = [
    { type: "ping", seq: 1 },
    { type: "free_ports", id: 9, ranges: [[10, 20], [30, 30]], truncated: false },
  ];
  const src = new ChunkReader([concat(...messages.map(encodeFrame))]);
  const reader = new FrameReader(src);
  for (const m of messages) assert.deepEqual(await reader.read(), m);
  assert.equal(src.reads, 1, "all three frames came from the first read");
  assert.equal(await reader.read(), null);
});

Deno.test("FrameReader reads a frame larger than its initial buffer across chunks", async () => {
  const message = { type: "shutdown", reason: "y".repeat(1000) } as const;
  const big = { type: "shutdown", reason: "z".repeat(1024) } as const;
  // Near the cap but valid JSON: a raw array of numbers.
  const huge = new Array(12_000).fill(1234);
  const hugeBody = encoder.encode(JSON.stringify(huge));
  assert.ok(hugeBody.length > 4096 * 4 && hugeBody.length <= MAX_FRAME_BYTES);
  const bytes = concat(encodeFrame(message), rawFrame(hugeBody), encodeFrame(big));
  const chunks: Uint8Array[] = [];
  for (let off = 0; off < bytes.length; off += 777) chunks.push(bytes.subarray(off, off + 777));
  const reader = new FrameReader(new ChunkReader(chunks));
  assert.deepEqual(await reader.read(), message);
  assert.deepEqual(await reader.read(), huge);
  assert.deepEqual(await reader.read(), big);
  assert.equal(await reader.read(), null);
});

Deno.test("FrameReader accepts a frame of exactly MAX_FRAME_BYTES", async () => {
  const body = encoder.encode(JSON.stringify("a".repeat(MAX_FRAME_BYTES - 2)));
  assert.equal(body.length, MAX_FRAME_BYTES);
  const reader = new FrameReader(new ChunkReader([rawFrame(body)]));
  assert.equal(await reader.read(), "a".repeat(MAX_FRAME_BYTES - 2));
});

Deno.test("takeBuffered returns exactly the bytes read past the last frame", async () => {
  const start: ServerMessage = {
    type: "start",
    id: 7,
    app: "web",
    user: "1.2.3.4:5555",
    source: { hostname: "1.2.3.4", port: 5555 },
    destination: { hostname: "198.51.100.1", port: 6022 },
  };
  const raw = new Uint8Array(300);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 7 + 3) & 0xff;
  // The frame and the first 200 raw bytes arrive together; the rest later.
  const src = new ChunkReader([
    concat(encodeFrame(start), raw.subarray(0, 200)),
    raw.subarray(200),
  ]);
  const reader = new FrameReader(src);
  assert.deepEqual(await reader.read(), start);
  assert.deepEqual(reader.takeBuffered(), raw.subarray(0, 200));
  assert.equal(src.reads, 1, "the reader did not read ahead of what it needed");
  assert.deepEqual(reader.takeBuffered(), new Uint8Array(0), "taken bytes are gone");
});

Deno.test("takeBuffered is empty when the read ended exactly at a frame", async () => {
  const reader = new FrameReader(
    new ChunkReader([encodeFrame({ type: "bye" }), Uint8Array.of(1, 2, 3)]),
  );
  assert.deepEqual(await reader.read(), { type: "bye" });
  assert.deepEqual(reader.takeBuffered(), new Uint8Array(0));
});

Deno.test("takeBuffered returns the partial next frame's bytes too", async () => {
  const second = encodeFrame({ type: "bye" });
  const src = new ChunkReader([concat(encodeFrame({ type: "bye" }), second.subarray(0, 6))]);
  const reader = new FrameReader(src);
  assert.deepEqual(await reader.read(), { type: "bye" });
  assert.deepEqual(reader.takeBuffered(), second.subarray(0, 6));
});

Deno.test("an oversize length prefix is refused before the body is read", async () => {
  const src = new ChunkReader([lengthPrefix(MAX_FRAME_BYTES + 1), new Uint8Array(1024)]);
  const reader = new FrameReader(src);
  await assert.rejects(
    reader.read(),
    (err) =>
      err instanceof ProtocolError &&
      err.message === `frame of ${MAX_FRAME_BYTES + 1} bytes exceeds the 65536-byte cap`,
  );
  assert.equal(src.reads, 1, "no read after the length prefix");
  assert.equal(src.delivered, 4);
});

Deno.test("a 4 GiB length prefix is refused without allocating", async () => {
  const reader = new FrameReader(new ChunkReader([Uint8Array.of(0xff, 0xff, 0xff, 0xff)]));
  await assert.rejects(reader.read(), /frame of 4294967295 bytes exceeds/);
});

Deno.test("a body that is not JSON is a ProtocolError", async () => {
  const reader = new FrameReader(new ChunkReader([rawFrame(encoder.encode("{not json"))]));
  await assert.rejects(
    reader.read(),
    (err) => err instanceof ProtocolError && err.message === "frame is not valid UTF-8 JSON",
  );
});

Deno.test("a body that is not valid UTF-8 is a ProtocolError", async () => {
  // A quoted string whose middle is a lone continuation byte and an overlong encoding.
  const body = Uint8Array.of(0x22, 0x80, 0xc0, 0xaf, 0x22);
  const reader = new FrameReader(new ChunkReader([rawFrame(body)]));
  await assert.rejects(
    reader.read(),
    (err) => err instanceof ProtocolError && err.message === "frame is not valid UTF-8 JSON",
  );
});

Deno.test("an empty body is a ProtocolError", async () => {
  const reader = new FrameReader(new ChunkReader([lengthPrefix(0)]));
  await assert.rejects(reader.read(), ProtocolError);
});

Deno.test("a clean EOF between frames reads as null", async () => {
  const empty = new FrameReader(new ChunkReader([]));
  assert.equal(await empty.read(), null);
  const one = new FrameReader(new ChunkReader([encodeFrame({ type: "bye" })]));
  assert.deepEqual(await one.read(), { type: "bye" });
  assert.equal(await one.read(), null);
});

Deno.test("EOF inside the length prefix is a ProtocolError", async () => {
  const reader = new FrameReader(new ChunkReader([Uint8Array.of(0, 0)]));
  await assert.rejects(
    reader.read(),
    (err) => err instanceof ProtocolError && err.message === "connection closed mid-frame",
  );
});

Deno.test("EOF inside the body is a ProtocolError", async () => {
  const frame = encodeFrame({ type: "ping", seq: 12345 });
  const reader = new FrameReader(new ChunkReader([frame.subarray(0, frame.length - 1)]));
  await assert.rejects(
    reader.read(),
    (err) => err instanceof ProtocolError && err.message === "connection closed mid-frame",
  );
});

Deno.test("read(timeoutMs) rejects with ProtocolError when the peer stays silent", async () => {
  const src = new SilentReader();
  const reader = new FrameReader(src);
  const began = performance.now();
  await assert.rejects(
    reader.read(50),
    (err) => err instanceof ProtocolError && err.message === "no complete frame within 0.05s",
  );
  const took = performance.now() - began;
  assert.ok(took >= 45, `rejected too early: ${took} ms`);
  assert.ok(took < 1000, `rejected too late: ${took} ms`);
  assert.equal(src.reads, 1);
});

Deno.test("read(timeoutMs) also times out a frame that stalls half-way", async () => {
  const frame = encodeFrame({ type: "ping", seq: 1 });
  let calls = 0;
  const src: ByteReader = {
    read(p) {
      calls++;
      if (calls > 1) return new Promise(() => {});
      p.set(frame.subarray(0, 6));
      return Promise.resolve(6);
    },
  };
  await assert.rejects(new FrameReader(src).read(30), ProtocolError);
});

Deno.test("read(timeoutMs) returns the frame when it arrives in time", async () => {
  const reader = new FrameReader(new ChunkReader([encodeFrame({ type: "pong", seq: 2 })]));
  assert.deepEqual(await reader.read(1000), { type: "pong", seq: 2 });
  assert.equal(await reader.read(1000), null);
});

Deno.test("FrameWriter never interleaves concurrent sends", async () => {
  const w = new OneByteWriter();
  const fw = new FrameWriter(w);
  const messages: ClientMessage[] = [
    { type: "ping", seq: 1 },
    { type: "expose", id: 2, app: "web", port: 0 },
    { type: "bye" },
  ];
  await Promise.all(messages.map((m) => fw.send(m)));
  const expected = concat(...messages.map(encodeFrame));
  assert.deepEqual(Uint8Array.from(w.bytes), expected);
  // And reading them back gives the same messages in order.
  const reader = new FrameReader(new ChunkReader([Uint8Array.from(w.bytes)]));
  for (const m of messages) assert.deepEqual(parseClientMessage(await reader.read()), m);
});

Deno.test("FrameWriter reports a failed write and carries on with the next", async () => {
  let fail = true;
  const written: number[] = [];
  const fw = new FrameWriter({
    write(p) {
      if (fail) {
        fail = false;
        return Promise.reject(new Error("broken pipe"));
      }
      written.push(...p);
      return Promise.resolve(p.length);
    },
  });
  const first = fw.send({ type: "ping", seq: 1 });
  const second = fw.send({ type: "ping", seq: 2 });
  await assert.rejects(first, /broken pipe/);
  await second;
  assert.deepEqual(Uint8Array.from(written), encodeFrame({ type: "ping", seq: 2 }));
});

// ---- messages --------------------------------------------------------------

const validServer: ServerMessage[] = [
  { type: "challenge", version: PROTOCOL_VERSION, server: "burrow-server 0.1.0", nonce: HEX64 },
  { type: "welcome", session: HEX32, heartbeatTimeout: 30 },
  { type: "exposed", id: 1, app: "ssh", port: 6022 },
  { type: "unexposed", id: 0, app: "web-1" },
  { type: "refused", id: 4, code: "port_taken", message: "port 6022 is taken by a/b" },
  { type: "refused", code: "auth_failed", message: "wrong token" },
  { type: "ping", seq: 0 },
  { type: "pong", seq: 99 },
  { type: "free_ports", id: 5, ranges: [[10000, 10010], [20000, 20000]], truncated: true },
  {
    type: "start",
    id: 12,
    app: "db",
    user: "203.0.113.9:51234",
    source: { hostname: "203.0.113.9", port: 51234 },
    destination: { hostname: "2001:db8::1", port: 6022 },
  },
  { type: "shutdown", reason: "server stopping" },
  {
    type: "udp_flow",
    flow: 4294967295,
    app: "dns",
    source: { hostname: "203.0.113.9", port: 5353 },
    destination: { hostname: "127.0.0.1", port: 6053 },
  },
];

const validClient: ClientMessage[] = [
  {
    type: "hello",
    version: 1,
    client: "burrow-client 0.1.0",
    group: "lab",
    runId: HEX32,
    proof: HEX64,
  },
  { type: "work_hello", version: 1, session: HEX32, proof: HEX64 },
  { type: "expose", id: 1, app: "ssh", port: 6022 },
  { type: "expose", id: 2, app: "web", port: 0, hint: 10001 },
  { type: "expose", id: 5, app: "dns", port: 0, udp: { idleTimeout: 0.5 } },
  { type: "unexpose", id: 3, app: "web" },
  { type: "free_ports", id: 4 },
  { type: "ping", seq: 8 },
  { type: "pong", seq: 8 },
  { type: "bye" },
];

Deno.test("parseServerMessage accepts every valid server message", () => {
  for (const m of validServer) {
    // Through JSON, as it comes off the wire.
    assert.deepEqual(parseServerMessage(JSON.parse(JSON.stringify(m))), m);
  }
});

Deno.test("parseClientMessage accepts every valid client message", () => {
  for (const m of validClient) {
    assert.deepEqual(parseClientMessage(JSON.parse(JSON.stringify(m))), m);
  }
});

function rejects(parse: (v: unknown) => unknown, value: unknown, message: RegExp): void {
  assert.throws(
    () => parse(value),
    (err) => err instanceof ProtocolError && message.test(err.message),
    `should reject ${JSON.stringify(value)}`,
  );
}

Deno.test("parseClientMessage rejects malformed messages", () => {
  const bad: Array<[unknown, RegExp]> = [
    // unknown type, no type, not an object
    [{ type: "teleport" }, /^invalid client message of type "teleport"$/],
    [{ seq: 1 }, /^invalid client message of type \(none\)$/],
    [null, /type \(none\)/],
    ["ping", /type \(none\)/],
    [[{ type: "bye" }], /type \(none\)/],
    // wrong field types
    [{ type: "ping", seq: "1" }, /type "ping"/],
    [{ type: "ping", seq: 1.5 }, /type "ping"/],
    [{ type: "ping", seq: -1 }, /type "ping"/],
    [{ type: "expose", id: 1, app: "ssh", port: 65536 }, /type "expose"/],
    [{ type: "expose", id: 1, app: "ssh", port: "22" }, /type "expose"/],
    [{ type: "expose", id: 1, app: "ssh", port: 0, hint: -2 }, /type "expose"/],
    // bad names
    [{ type: "unexpose", id: 1, app: "SSH" }, /type "unexpose"/],
    [{ type: "unexpose", id: 1, app: "-ssh" }, /type "unexpose"/],
    [{ type: "unexpose", id: 1, app: "" }, /type "unexpose"/],
    [{ type: "unexpose", id: 1, app: "a".repeat(64) }, /type "unexpose"/],
    [{ ...validClient[0] as object, group: "home_lab" }, /type "hello"/],
    // bad hex
    [{ ...validClient[0] as object, proof: "AB".repeat(32) }, /type "hello"/],
    [{ ...validClient[0] as object, proof: "ab".repeat(31) }, /type "hello"/],
    [{ ...validClient[0] as object, runId: "zz".repeat(16) }, /type "hello"/],
    [{ ...validClient[1] as object, session: "0f".repeat(17) }, /type "work_hello"/],
    // missing fields
    [{ type: "hello", version: 1, client: "c", group: "lab", runId: HEX32 }, /type "hello"/],
    [{ type: "work_hello", session: HEX32, proof: HEX64 }, /type "work_hello"/],
    [{ type: "expose", app: "ssh", port: 1 }, /type "expose"/],
    // a server-only type
    [{ type: "welcome", session: HEX32, heartbeatTimeout: 30 }, /type "welcome"/],
    [{ type: "start", app: "db", user: "u" }, /type "start"/],
  ];
  for (const [value, message] of bad) rejects(parseClientMessage, value, message);
});

Deno.test("parseServerMessage rejects malformed messages", () => {
  const bad: Array<[unknown, RegExp]> = [
    [{ type: "hello" }, /^invalid server message of type "hello"$/],
    [{}, /^invalid server message of type \(none\)$/],
    [42, /type \(none\)/],
    [{ type: "challenge", version: 1, server: "s", nonce: "ab" }, /type "challenge"/],
    [{ type: "challenge", version: 1, server: "s" }, /type "challenge"/],
    [{ type: "challenge", version: "1", server: "s", nonce: HEX64 }, /type "challenge"/],
    [{ type: "welcome", session: HEX32, heartbeatTimeout: 0 }, /type "welcome"/],
    [{ type: "welcome", session: HEX64, heartbeatTimeout: 30 }, /type "welcome"/],
    [{ type: "exposed", id: 1, app: "Web", port: 80 }, /type "exposed"/],
    [{ type: "exposed", id: 1, app: "web" }, /type "exposed"/],
    [{ type: "refused", code: "because", message: "no" }, /type "refused"/],
    [{ type: "refused", code: "port_taken" }, /type "refused"/],
    [{ type: "free_ports", id: 1, ranges: [[1, 2, 3]] }, /type "free_ports"/],
    [{ type: "free_ports", id: 1, ranges: [[1, 70000]] }, /type "free_ports"/],
    [{ type: "start", id: 1, app: "db", user: "u".repeat(1025) }, /type "start"/],
    [{ type: "start", app: "db", user: "u" }, /type "start"/],
    // v4: a start names both ends of the user's connection.
    [{ type: "start", id: 1, app: "db", user: "u" }, /type "start"/],
    [{
      type: "start",
      id: 1,
      app: "db",
      user: "u",
      source: { hostname: "1.2.3.4", port: 70000 },
      destination: { hostname: "1.2.3.4", port: 1 },
    }, /type "start"/],
    [{ type: "shutdown" }, /type "shutdown"/],
  ];
  for (const [value, message] of bad) rejects(parseServerMessage, value, message);
});

Deno.test("an invalid message's type is quoted and cut short in the error", () => {
  assert.throws(
    () => parseClientMessage({ type: "x".repeat(100) }),
    (err) =>
      err instanceof ProtocolError &&
      err.message ===
        `invalid client message of type ${JSON.stringify("x".repeat(100)).slice(0, 40)}`,
  );
});

Deno.test("a rejected message whose type is an object or array is a ProtocolError", () => {
  // Found by tests/unit/protocol_fuzz_test.ts: quoting the type ran String() on
  // it, which threw a TypeError for a `toString` key that is not a function
  // and a RangeError (stack overflow) for an array nested thousands deep.
  const deep = JSON.parse(`{"type":${"[".repeat(20_000)}${"]".repeat(20_000)}}`);
  const cases: Array<[unknown, string]> = [
    [JSON.parse('{"type":{"toString":1}}'), "(object)"],
    [JSON.parse('{"type":{"toString":{},"valueOf":{}}}'), "(object)"],
    [deep, "(array)"],
    [{ type: ["ping"] }, "(array)"],
    [{ type: null }, '"null"'],
    [{ type: 7 }, '"7"'],
  ];
  for (const [value, quoted] of cases) {
    for (
      const [parse, from] of [[parseClientMessage, "client"], [
        parseServerMessage,
        "server",
      ]] as const
    ) {
      assert.throws(
        () => parse(value),
        (err) =>
          err instanceof ProtocolError &&
          err.message === `invalid ${from} message of type ${quoted}`,
      );
    }
  }
});

Deno.test("versionMismatch names the side to upgrade", () => {
  assert.equal(
    versionMismatch(1, 2),
    "protocol mismatch: client speaks v1, server speaks v2; upgrade burrow-client",
  );
  assert.equal(
    versionMismatch(3, 2),
    "protocol mismatch: client speaks v3, server speaks v2; upgrade burrow-server",
  );
});

Deno.test("work stream headers: start or udp_flow, each checked", () => {
  const flow = {
    type: "udp_flow",
    flow: 7,
    app: "dns",
    source: { hostname: "127.0.0.1", port: 40000 },
    destination: { hostname: "127.0.0.1", port: 6053 },
  };
  assert.deepEqual(parseWorkHeader(flow), flow);
  rejects(parseWorkHeader, { ...flow, flow: 2 ** 32 }, /invalid server message of type "udp_flow"/);
  rejects(parseWorkHeader, { ...flow, flow: -1 }, /invalid server message of type "udp_flow"/);
  rejects(
    parseWorkHeader,
    { ...flow, app: "Bad Name" },
    /invalid server message of type "udp_flow"/,
  );
  rejects(
    parseWorkHeader,
    { type: "exposed", id: 1, app: "a", port: 1 },
    /expected start or udp_flow/,
  );
  // A v6 client's parser refuses a flow: it never gets one (a udp app needs v7 on both sides).
  rejects(parseStart, flow, /expected start, got "udp_flow"/);
});

Deno.test("a udp expose carries its idle timeout, and is never a web app too", () => {
  const udp = { type: "expose", id: 1, app: "dns", port: 0, udp: { idleTimeout: 60 } };
  assert.deepEqual(parseClientControl(udp), udp);
  rejects(
    parseClientControl,
    { ...udp, udp: { idleTimeout: 0 } },
    /invalid client message of type "expose"/,
  );
  rejects(parseClientControl, { ...udp, udp: {} }, /invalid client message of type "expose"/);
  rejects(
    parseClientControl,
    { ...udp, web: { type: "http", hostnames: [], paths: [] } },
    /invalid client message of type "expose"/,
  );
});
