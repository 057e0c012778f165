/**
 * A mux session against a hostile or mismatched peer: the peer here is raw
 * bytes written into the other end of the connection. Version mismatches
 * say which program to upgrade; every protocol violation ends the session
 * with a `MuxProtocolError` naming it (and fails its streams); frames that
 * were merely in flight when a stream ended are dropped; random frames
 * (fuzzed) end the session with a typed error and never leave an unhandled
 * rejection behind.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  MuxConnectionError,
  MuxProtocolError,
  MuxSession,
  type MuxSessionOptions,
  MuxVersionError,
} from "../../lib/transport/mux/mod.ts";
import {
  DATA,
  DATAGRAM,
  FLAG_FIN,
  GOAWAY,
  HEADER_SIZE,
  OPEN,
  PING,
  preamble,
  RESET,
  WINDOW,
  writeHeader,
} from "../../lib/transport/mux/frame.ts";
import { fuzz } from "../helpers/fuzz.ts";
import { concat, frame } from "../helpers/mux_frames.ts";
import { memoryPipe, type PipeEnd } from "../helpers/memory_pipe.ts";
import { until } from "../helpers/mux_rig.ts";

async function writeAll(w: PipeEnd | Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await w.write(bytes.subarray(off));
}

/** A session of `role` and the raw other end of its connection. */
function againstRaw(options: MuxSessionOptions): {
  session: MuxSession;
  peer: PipeEnd;
  [Symbol.asyncDispose](): Promise<void>;
} {
  const [mine, theirs] = memoryPipe();
  const session = new MuxSession(mine, options);
  return {
    session,
    peer: theirs,
    async [Symbol.asyncDispose]() {
      session.close();
      await session.closed;
      try {
        theirs.close();
      } catch {
        // closed by the test
      }
    },
  };
}

/** Waits for the session to fail; returns the error. */
async function failure(session: MuxSession): Promise<Error> {
  const reason = await session.closed;
  assert.equal(reason.kind, "failed", `expected a failure, got ${JSON.stringify(reason)}`);
  return (reason as { error: Error }).error;
}

Deno.test("mux hostile: a newer peer's version says to upgrade this side", async () => {
  await using rig = againstRaw({ role: "client" });
  const stream = rig.session.openStream();
  await writeAll(rig.peer, preamble(2));
  const err = await failure(rig.session);
  assert.ok(err instanceof MuxVersionError);
  assert.equal(err.message, "expected mux v1, got v2: upgrade burrow-client");
  assert.equal(err.theirs, 2);
  await assert.rejects(stream.read(new Uint8Array(1)), MuxVersionError);
});

Deno.test("mux hostile: an older peer's version says to upgrade the peer", async () => {
  await using rig = againstRaw({ role: "server" });
  await writeAll(rig.peer, preamble(0));
  const err = await failure(rig.session);
  assert.equal(err.message, "expected mux v1, got v0: upgrade burrow-client");
  await using rig2 = againstRaw({ role: "server" });
  await writeAll(rig2.peer, preamble(2));
  assert.equal(
    (await failure(rig2.session)).message,
    "expected mux v1, got v2: upgrade burrow-server",
  );
});

Deno.test("mux hostile: version mismatch over TCP, and the peer reads ours first", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [raw, accepted] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  const session = new MuxSession(accepted, { role: "server" });
  try {
    const theirs = new Uint8Array(5);
    let got = 0;
    while (got < 5) got += (await raw.read(theirs.subarray(got))) ?? Infinity;
    assert.deepEqual([...theirs], [0x42, 0x4d, 0x55, 0x58, 1]); // "BMUX" v1 leaves first
    await writeAll(raw, preamble(7));
    assert.equal(
      (await failure(session)).message,
      "expected mux v1, got v7: upgrade burrow-server",
    );
  } finally {
    session.close();
    raw.close();
  }
});

Deno.test("mux hostile: no preamble within the first-frame deadline ends the session", async () => {
  await using rig = againstRaw({ role: "server", handshakeMs: 200 });
  const started = performance.now();
  const err = await failure(rig.session);
  assert.ok(err instanceof MuxProtocolError);
  assert.match(err.message, /no mux preamble from the peer within 200 ms/);
  assert.ok(performance.now() - started < 3_000);
});

const KiB = 1024;
const chunk = new Uint8Array(256 * KiB);

const violations: Array<[string, MuxSessionOptions, (s: MuxSession) => Uint8Array[], RegExp]> = [
  [
    "DATA for a stream never opened",
    { role: "server" },
    () => [frame(DATA, 0, 1, 1, new Uint8Array(1))],
    /DATA frame for stream 1, which was never opened/,
  ],
  [
    "an OPEN with this side's parity",
    { role: "server" },
    () => [frame(OPEN, 0, 2, 0)],
    /opened stream 2, but even ids are this side's/,
  ],
  [
    "an id opened twice",
    { role: "server" },
    () => [frame(OPEN, 0, 5, 0), frame(OPEN, 0, 5, 0)],
    /opened stream 5 after stream 5/,
  ],
  ["more data than the stream window", { role: "server" }, () => [
    frame(OPEN, 0, 1, 0),
    frame(DATA, 0, 1, chunk.length, chunk),
    frame(DATA, 0, 1, 1, new Uint8Array(1)),
  ], /more on stream 1 than its window allows/],
  [
    "more data than the session window",
    { role: "server", sessionWindow: 1024 * KiB },
    () =>
      Array.from(
        { length: 17 },
        (_, i) => [frame(OPEN, 0, 2 * i + 1, 0), frame(DATA, 0, 2 * i + 1, chunk.length, chunk)],
      ).flat(),
    /more than the session window allows/,
  ],
  ["a stream window past 2 GiB", { role: "server" }, (s) => {
    const id = s.openStream().id;
    return [frame(WINDOW, 0, id, 2 ** 31)];
  }, /grants for stream 4 add up to more than 2 GiB/],
  [
    "a session window past 2 GiB",
    { role: "client" },
    () => [frame(WINDOW, 0, 0, 2 ** 31)],
    /session window grants add up/,
  ],
  ["DATA after FIN", { role: "server" }, () => [
    frame(OPEN, 0, 1, 0),
    frame(DATA, FLAG_FIN, 1, 0),
    frame(DATA, 0, 1, 1, new Uint8Array(1)),
  ], /DATA frame for stream 1 after its FIN/],
  [
    "a WINDOW for a stream never opened",
    { role: "client" },
    () => [frame(WINDOW, 0, 7, 10)],
    /WINDOW frame for stream 7, which was never opened/,
  ],
  [
    "a RESET for a stream never opened",
    { role: "client" },
    () => [frame(RESET, 0, 8, 1, new Uint8Array([0]))],
    /RESET frame for stream 8, which was never opened/,
  ],
  [
    "an unknown frame type",
    { role: "client" },
    () => [frame(200, 0, 1, 0)],
    /unknown mux frame type 200/,
  ],
];

for (const [what, options, frames, message] of violations) {
  Deno.test(`mux hostile: ${what} ends the session with a ProtocolError`, async () => {
    await using rig = againstRaw(options);
    const victim = rig.session.openStream();
    await writeAll(rig.peer, concat([preamble(), ...frames(rig.session)]));
    const err = await failure(rig.session);
    assert.ok(err instanceof MuxProtocolError, String(err));
    assert.match(err.message, message);
    await assert.rejects(victim.write(new Uint8Array(1)), MuxProtocolError);
  });
}

Deno.test("mux hostile: a peer that pings without reading is cut off, memory bounded", async () => {
  await using rig = againstRaw({ role: "server" });
  const pings = new Uint8Array(HEADER_SIZE * 200_000);
  for (let i = 0; i < 200_000; i++) writeHeader(pings, i * HEADER_SIZE, PING, 0, 0, i);
  writeAll(rig.peer, concat([preamble(), pings])).catch(() => {}); // it never reads
  const err = await failure(rig.session);
  assert.ok(err instanceof MuxProtocolError);
  assert.match(err.message, /asks for replies faster than it reads them/);
});

Deno.test("mux hostile: frames still in flight for an ended stream are dropped, the session goes on", async () => {
  await using rig = againstRaw({ role: "server", maxStreams: 1 });
  const mine = rig.session.openStream();
  mine.reset("changed my mind");
  await writeAll(
    rig.peer,
    concat([
      preamble(),
      frame(DATA, 0, mine.id, 3, new Uint8Array(3)),
      frame(WINDOW, 0, mine.id, 1000),
      frame(RESET, 0, mine.id, 1, new Uint8Array([0])),
      // Refused (the limit is one stream, the reset one is gone, so one fits; the second not).
      frame(OPEN, 0, 1, 0),
      frame(OPEN, 0, 3, 0),
      frame(DATA, 0, 3, 4, new Uint8Array(4)),
      frame(DATA, FLAG_FIN, 1, 2, new Uint8Array([0x68, 0x69])),
    ]),
  );
  const accepted = await rig.session.accept();
  assert.equal(accepted?.id, 1);
  const buf = new Uint8Array(10);
  assert.equal(await accepted!.read(buf), 2);
  await until(() => rig.session.stats.refused === 1, 5_000, "the refusal");
  assert.equal(rig.session.canOpen, true);
});

const PAYLOAD_TYPES = new Set<number>([DATA, OPEN, RESET, GOAWAY, DATAGRAM]);
const frameArb = fc.record({
  type: fc.oneof(fc.constantFrom(DATA, OPEN, WINDOW, RESET, PING, GOAWAY, DATAGRAM), fc.nat(255)),
  flags: fc.oneof(fc.constant(0), fc.constant(1), fc.nat(255)),
  id: fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 5), fc.nat(40), fc.nat()),
  value: fc.oneof(fc.nat(300_000), fc.constant(2 ** 32 - 1)),
  payload: fc.uint8Array({ maxLength: 300 }),
  consistent: fc.boolean(),
}).map(({ type, flags, id, value, payload, consistent }) => {
  if (!PAYLOAD_TYPES.has(type)) return frame(type, flags, id, value);
  if (type === RESET && payload.length > 0) payload[0] = payload[0]! % 2;
  return consistent
    ? frame(type, flags, id, payload.length, payload)
    : frame(type, flags, id, value, payload);
});

Deno.test("mux hostile: random frames end the session with a typed error, nothing unhandled", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(frameArb, { maxLength: 30 }),
      fc.boolean(),
      fc.constantFrom<"client" | "server">("client", "server"),
      async (frames, withPreamble, role) => {
        const [mine, theirs] = memoryPipe();
        const session = new MuxSession(mine, { role, handshakeMs: 2_000 });
        // An application on the session, as the tunnel would run it.
        const app = (async () => {
          for await (const s of session.incoming()) {
            s.read(new Uint8Array(100)).then(() => s.write(new Uint8Array(5))).catch(() => {});
          }
        })();
        const own = session.openStream(new Uint8Array([1, 2]));
        own.write(new Uint8Array(1000)).catch(() => {});
        own.read(new Uint8Array(10)).catch(() => {});
        const drain = (async () => {
          const buf = new Uint8Array(64 * 1024);
          try {
            while ((await theirs.read(buf)) !== null) { /* the peer ignores replies */ }
          } catch {
            // closed
          }
        })();
        try {
          await writeAll(theirs, concat(withPreamble ? [preamble(), ...frames] : frames));
        } catch {
          // the session hung up first
        }
        try {
          theirs.close();
        } catch {
          // closed
        }
        const reason = await session.closed;
        await app;
        await drain;
        assert.equal(reason.kind, "failed");
        const err = (reason as { error: Error }).error;
        assert.ok(
          err instanceof MuxProtocolError || err instanceof MuxConnectionError,
          String(err),
        );
      },
    ),
    fuzz(300),
  );
});
