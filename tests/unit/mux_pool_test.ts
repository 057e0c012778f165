/**
 * The client's pool of mux sessions (lib/transport/mux/pool.ts) over real
 * loopback TCP: streams spread over the sessions by load, a session whose
 * connection dies fails only its own streams and is replaced, a pool with
 * no session up waits for one (or says why it gave up), and closing stops
 * everything.
 */

import assert from "node:assert/strict";
import {
  MuxConnectionError,
  MuxPool,
  type MuxPoolEvent,
  MuxSession,
} from "../../lib/transport/mux/mod.ts";
import { readAll, until, writeAllThenClose } from "../helpers/mux_rig.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A TCP server running a mux session per connection; it echoes every stream. */
function echoServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sessions: Array<{ session: MuxSession; conn: Deno.TcpConn }> = [];
  const serving = (async () => {
    for await (const conn of listener) {
      const session = new MuxSession(conn, { role: "server" });
      sessions.push({ session, conn });
      (async () => {
        for await (const s of session.incoming()) {
          readAll(s).then((bytes) => writeAllThenClose(s, bytes)).catch(() => {}).finally(() =>
            s.close()
          );
        }
      })();
    }
  })();
  return {
    port: listener.addr.port,
    sessions,
    async [Symbol.asyncDispose]() {
      listener.close();
      await serving.catch(() => {});
      for (const { session } of sessions) session.close();
      await Promise.all(sessions.map(({ session }) => session.closed));
    },
  };
}

async function roundTrip(pool: MuxPool, text: string): Promise<string> {
  const s = await pool.openStream();
  await writeAllThenClose(s, encoder.encode(text));
  const back = decoder.decode(await readAll(s));
  s.close();
  return back;
}

Deno.test("mux pool: streams spread over the sessions, fewest streams first", async () => {
  await using server = echoServer();
  await using pool = new MuxPool({
    dial: () => Deno.connect({ hostname: "127.0.0.1", port: server.port }),
    size: 3,
  });
  assert.equal(await roundTrip(pool, "hello"), "hello");
  await until(() => pool.live === 3, 10_000, "three sessions");
  const held = await Promise.all(Array.from({ length: 9 }, () => pool.openStream()));
  for (const s of held) await s.write(encoder.encode("x"));
  await until(
    () =>
      server.sessions.length === 3 &&
      server.sessions.every(({ session }) => session.streamCount === 3),
    10_000,
    "three streams on each session",
  );
  for (const s of held) s.close();
});

Deno.test("mux pool: a dead connection fails only its streams and is replaced", async () => {
  await using server = echoServer();
  const events: MuxPoolEvent[] = [];
  await using pool = new MuxPool({
    dial: () => Deno.connect({ hostname: "127.0.0.1", port: server.port }),
    size: 2,
    backoff: { initialMs: 20, maxMs: 100 },
    onEvent: (e) => events.push(e),
  });
  await pool.openStream().then((s) => s.close());
  await until(() => pool.live === 2 && server.sessions.length === 2, 10_000, "two sessions");
  const streams = await Promise.all(Array.from({ length: 4 }, () => pool.openStream()));
  for (const s of streams) await s.write(encoder.encode("x"));
  await until(
    () => server.sessions.every(({ session }) => session.streamCount === 2),
    10_000,
    "spread",
  );
  server.sessions[0]!.conn.close(); // one connection dies under its session
  const outcomes = await Promise.all(streams.map(async (s) => {
    await s.closeWrite().catch(() => {});
    return readAll(s).then(
      () => "ok",
      (e) => e instanceof MuxConnectionError ? "failed" : String(e),
    );
  }));
  assert.deepEqual(outcomes.sort(), ["failed", "failed", "ok", "ok"]);
  await until(
    () => server.sessions.length === 3 && pool.live === 2,
    10_000,
    "a replacement session",
  );
  assert.ok(events.some((e) => e.kind === "down"));
  assert.equal(await roundTrip(pool, "still here"), "still here");
});

Deno.test("mux pool: waits for a session while dials fail, and says why when it gives up", async () => {
  await using server = echoServer();
  let attempts = 0;
  await using pool = new MuxPool({
    dial: () => {
      attempts++;
      if (attempts <= 2) return Promise.reject(new Error(`connection refused (${attempts})`));
      return Deno.connect({ hostname: "127.0.0.1", port: server.port });
    },
    size: 1,
    backoff: { initialMs: 20, maxMs: 50 },
  });
  assert.equal(await roundTrip(pool, "eventually"), "eventually");
  assert.ok(attempts >= 3);

  await using never = new MuxPool({
    dial: () => Promise.reject(new Error("no route to host")),
    size: 1,
    backoff: { initialMs: 10, maxMs: 20 },
  });
  await assert.rejects(
    never.openStream(undefined, 200),
    /no mux session up within 200 ms: no route to host/,
  );
});
