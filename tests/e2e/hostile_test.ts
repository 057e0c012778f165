/**
 * Peers that misbehave at the TCP level must never take a listener down:
 * connections reset before they are accepted, on the control port and on
 * public ports.
 */

import assert from "node:assert/strict";
import {
  encodeFrame,
  FrameReader,
  FrameWriter,
  parseServerMessage,
  PROTOCOL_VERSION,
} from "../../lib/protocol/protocol.ts";
import { prove, Secret } from "../../lib/util/secret.ts";
import {
  connectAndReset,
  connectFrom,
  dialControl,
  echoApp,
  echoThrough,
  groupFile,
  randomBytes,
  readyPort,
  sha256,
  startClient,
  startServer,
  startTunnel,
  writeAll,
} from "../helpers/harness.ts";

const TOKEN = "hostile-token-Pw4";

Deno.test("connections reset before accept stop neither the control listener nor a public port", async () => {
  await using tunnel = await startTunnel({ group: "first", token: TOKEN });
  const { server } = tunnel;
  const port = await tunnel.port("echo");
  for (let i = 0; i < 20; i++) {
    await connectAndReset(server.port);
    await connectAndReset(port);
  }
  await server.proc.stderr.wait(/accept failed: .*not connected/i);
  // The control listener still accepts and registers a new group...
  const second = tunnel.addClient("second");
  const port2 = await readyPort(second, "second", "echo");
  // ...and both public ports still carry bytes exactly.
  for (const p of [port, port2]) {
    const data = randomBytes(200_000);
    assert.equal(await echoThrough(p, data), await sha256(data));
  }
});

Deno.test("the idle work pool refills after a burst, so later users need no extra round trip", async () => {
  await using tunnel = await startTunnel({ group: "bursty", token: TOKEN });
  const { server } = tunnel;
  const port = await tunnel.port("echo");
  const burst = await Promise.all(Array.from({ length: 100 }, async () => {
    const data = randomBytes(2000);
    return (await echoThrough(port, data)) === (await sha256(data));
  }));
  assert.equal(burst.filter((ok) => ok).length, 100);
  const asked = () =>
    server.proc.stderr.all.filter((l) => l.includes("asking the client for one")).length;
  assert.ok(asked() > 0, "a burst of 100 outran the pool of 8");
  const before = asked();
  // Users arrive every 25 ms: a pace a refilling pool keeps up with (each
  // refill is a TLS handshake of a few ms), a drained one never does.
  for (let i = 0; i < 40; i++) {
    const data = randomBytes(1000);
    const next = new Promise((resolve) => setTimeout(resolve, 25));
    assert.equal(await echoThrough(port, data), await sha256(data));
    await next;
  }
  // With the pool drained for good, all but the burst's few leftover extras
  // would have asked (32 of 40 before the fix).
  assert.ok(asked() - before <= 2, `sequential users asked for work ${asked() - before} times`);
});

Deno.test("a client whose stdout is a closed pipe keeps serving and stops cleanly", async () => {
  await using tunnel = await startTunnel({ group: "piped", token: TOKEN });
  const { client, server } = tunnel;
  await client.stdout.cancel(); // the reader of stdout is gone: `ready` hits a broken pipe
  const m = await server.proc.stderr.wait(/piped\/echo is live on 127\.0\.0\.1:(\d+)/);
  await client.stderr.wait(/ready callback for piped\/echo failed/);
  const data = randomBytes(100_000);
  assert.equal(await echoThrough(Number(m[1]), data), await sha256(data));
  client.kill("SIGTERM");
  assert.equal(await client.exitCode(3000), 0);
});

Deno.test("a flood of silent handshakes is capped; clients register once it is gone", async () => {
  const app = echoApp();
  const server = await startServer({ token: TOKEN });
  const flood: Array<{ destroy(): void }> = [];
  let client: ReturnType<typeof startClient> | undefined;
  try {
    // 560 from 20 addresses: under the per-source limit, over the global one.
    for (let i = 0; i < 560; i++) {
      flood.push(await connectFrom(`127.0.1.${1 + (i % 20)}`, server.port));
    }
    await server.proc.stderr.wait(/512 handshakes in flight: turning new connections away/);
    for (const c of flood.splice(0)) c.destroy();
    client = startClient(groupFile({
      server: `127.0.0.1:${server.port}`,
      token: TOKEN,
      group: "after-flood",
      apps: [{ name: "echo", local: app.addr }],
    }));
    const port = await readyPort(client, "after-flood", "echo");
    const data = randomBytes(10_000);
    assert.equal(await echoThrough(port, data), await sha256(data));
  } finally {
    for (const c of flood) c.destroy();
    await client?.stop();
    await server.proc.stop();
    app.close();
  }
});

Deno.test("one source's flood of handshakes is capped at its own limit; other hosts register meanwhile", async () => {
  const app = echoApp();
  const server = await startServer({ token: TOKEN });
  const flood: Array<{ destroy(): void }> = [];
  let client: ReturnType<typeof startClient> | undefined;
  try {
    for (let i = 0; i < 100; i++) flood.push(await connectFrom("127.0.2.9", server.port));
    await server.proc.stderr.wait(
      /64 handshakes in flight from 127\.0\.2\.9: turning its new connections away \(limits\.handshakes_per_source\)/,
    );
    // The flood still holds its 64 handshakes; a client from 127.0.0.1 is not held up.
    client = startClient(groupFile({
      server: `127.0.0.1:${server.port}`,
      token: TOKEN,
      group: "beside-flood",
      apps: [{ name: "echo", local: app.addr }],
    }));
    const port = await readyPort(client, "beside-flood", "echo");
    const data = randomBytes(10_000);
    assert.equal(await echoThrough(port, data), await sha256(data));
  } finally {
    for (const c of flood) c.destroy();
    await client?.stop();
    await server.proc.stop();
    app.close();
  }
});

Deno.test("control characters from peers cannot forge log lines", async () => {
  const server = await startServer({ token: TOKEN });
  try {
    const conn = await dialControl(server.port);
    const reader = new FrameReader(conn);
    const challenge = parseServerMessage(await reader.read(5000));
    assert.equal(challenge.type, "challenge");
    const runId = "0".repeat(32);
    await new FrameWriter(conn).send({
      type: "hello",
      version: PROTOCOL_VERSION,
      client: "1.0\n2026-01-01T00:00:00Z ERROR   server: FORGED LINE",
      group: "forger",
      runId,
      proof: await prove(new Secret(TOKEN), challenge.nonce, "control", "forger", runId),
    });
    assert.equal(parseServerMessage(await reader.read(5000)).type, "welcome");
    conn.close();
    const line = await server.proc.stderr.wait(/group forger connected from .*FORGED LINE/);
    assert.match(
      line.input ?? "",
      /\(burrow 1\.0\\x0a2026-01-01T00:00:00Z ERROR {3}server: FORGED LINE\)$/,
    );
    assert.ok(
      !server.proc.stderr.all.some((l) => l.startsWith("2026-01-01T00:00:00Z")),
      "a forged line",
    );
  } finally {
    await server.proc.stop();
  }
});

Deno.test("a malformed expose is refused on its own; the session carries on", async () => {
  const server = await startServer({ token: TOKEN });
  try {
    const conn = await dialControl(server.port);
    const reader = new FrameReader(conn);
    const writer = new FrameWriter(conn);
    const challenge = parseServerMessage(await reader.read(5000));
    assert.equal(challenge.type, "challenge");
    const runId = "1".repeat(32);
    await writer.send({
      type: "hello",
      version: PROTOCOL_VERSION,
      client: "raw",
      group: "raw",
      runId,
      proof: await prove(new Secret(TOKEN), challenge.nonce, "control", "raw", runId),
    });
    assert.equal(parseServerMessage(await reader.read(5000)).type, "welcome");
    // maxUsers 0 breaks the schema: sent raw, as an older or hostile client might.
    await writeAll(
      conn,
      encodeFrame({ type: "expose", id: 7, app: "bad", port: 0, limits: { maxUsers: 0 } } as never),
    );
    assert.deepEqual(parseServerMessage(await reader.read(5000)), {
      type: "refused",
      id: 7,
      code: "bad_request",
      message: "malformed expose request",
    });
    await writer.send({ type: "expose", id: 8, app: "good", port: 0 });
    const exposed = parseServerMessage(await reader.read(5000));
    assert.equal(exposed.type, "exposed");
    conn.close();
  } finally {
    await server.proc.stop();
  }
});
