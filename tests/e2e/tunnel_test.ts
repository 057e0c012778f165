/**
 * The data path end to end with real processes: byte-exact transfers, half
 * close, many groups, apps and concurrent users, and an app that refuses.
 */

import assert from "node:assert/strict";
import {
  echoApp,
  echoThrough,
  fullyClosed,
  groupFile,
  localApp,
  portBlock,
  randomBytes,
  readAll,
  readyPort,
  sha256,
  startClient,
  startServer,
  startTunnel,
  writeAll,
} from "../helpers/harness.ts";

const TOKEN = "e2e-token-7f3a";

Deno.test("16 MB each way arrives byte-exact (SHA-256) through the tunnel", async () => {
  await using tunnel = await startTunnel({ group: "bulk", token: TOKEN });
  const port = await tunnel.port("echo");
  const data = randomBytes(16 * 1024 * 1024);
  assert.equal(await echoThrough(port, data), await sha256(data));
});

Deno.test("half-close passes both ways; an app that speaks first and closes first works", async () => {
  const greeting = randomBytes(100_000);
  // Speaks first, reads everything the user sends, answers its SHA-256, then closes.
  const app = localApp(async (conn) => {
    await writeAll(conn, greeting);
    const got = await readAll(conn);
    await writeAll(conn, new TextEncoder().encode(await sha256(got as Uint8Array<ArrayBuffer>)));
    await conn.closeWrite();
  });
  await using tunnel = await startTunnel({
    group: "half",
    token: TOKEN,
    app,
    apps: [{ name: "talker" }],
  });
  const port = await tunnel.port("talker");
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const upload = randomBytes(3 * 1024 * 1024);
  const reading = readAll(conn);
  await writeAll(conn, upload);
  await conn.closeWrite(); // FIN user -> app; the app must still be able to answer
  const back = await reading;
  conn.close();
  const expected = new Uint8Array(greeting.length + 64);
  expected.set(greeting);
  expected.set(new TextEncoder().encode(await sha256(upload)), greeting.length);
  assert.equal(await sha256(back as Uint8Array<ArrayBuffer>), await sha256(expected));
});

Deno.test("many groups and apps at once, 200 concurrent users, all byte-exact", async () => {
  const apps = [echoApp(), echoApp(), echoApp()];
  const server = await startServer({ token: TOKEN, ports: portBlock(60).spec });
  const clients = ["alpha", "beta"].map((group) =>
    startClient(groupFile({
      server: `127.0.0.1:${server.port}`,
      token: TOKEN,
      group,
      apps: apps.map((a, i) => ({ name: `app-${i}`, local: a.addr })),
    }))
  );
  try {
    const ports: number[] = [];
    for (const [c, group] of [[clients[0], "alpha"], [clients[1], "beta"]] as const) {
      for (let i = 0; i < apps.length; i++) ports.push(await readyPort(c!, group, `app-${i}`));
    }
    assert.equal(new Set(ports).size, 6, "every app has its own public port");
    const jobs = Array.from({ length: 200 }, async (_, i) => {
      const data = randomBytes(1000 + i * 97);
      const port = ports[i % ports.length] as number;
      return (await echoThrough(port, data)) === (await sha256(data));
    });
    const results = await Promise.all(jobs);
    assert.equal(results.filter((ok) => ok).length, 200);
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    await server.proc.stop();
    apps.forEach((a) => a.close());
  }
});

Deno.test("an app whose local service refuses closes the user within a second; others carry on", async () => {
  const dead = localApp(() => Promise.resolve());
  const deadAddr = dead.addr;
  dead.close(); // nothing listens there now: connections are refused
  // "good" points at the tunnel's echo app.
  await using tunnel = await startTunnel({
    group: "mixed",
    token: TOKEN,
    apps: [{ name: "dead", local: deadAddr }, { name: "good" }],
  });
  const { client, server } = tunnel;
  const deadPort = await tunnel.port("dead");
  const goodPort = await tunnel.port("good");
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: deadPort });
    await writeAll(conn, new TextEncoder().encode("hello?"));
    const got = await readAll(conn);
    conn.close();
    const took = performance.now() - started;
    assert.equal(got.length, 0, "no bytes come back from a refusing app");
    assert.ok(took < 1000, `user closed after ${took.toFixed(0)} ms, expected under 1000`);
  }
  await client.stderr.wait(
    /mixed\/dead: user .* turned away: cannot reach 127\.0\.0\.1:\d+: connection refused/,
  );
  await server.proc.stderr.wait(/user .* on mixed\/dead failed \(client could not reach the app/);
  const data = randomBytes(500_000);
  assert.equal(await echoThrough(goodPort, data), await sha256(data));
  assert.equal(
    client.stdout.all.filter((l) => l.startsWith("ready ")).length,
    2,
    "the client did not reconnect",
  );
});

Deno.test("server-picked ports never take a port that a sibling app names", async () => {
  // Eight ports, seven apps left to the server listed before the one that names
  // a port: were requests served in file order, a random pick would take the
  // named port 7 times in 8 and the client would be refused.
  const block = portBlock(8);
  const autos = Array.from({ length: 7 }, (_, i) => ({ name: `auto-${i}` }));
  await using tunnel = await startTunnel({
    group: "crowd",
    token: TOKEN,
    server: { ports: block.spec },
    apps: [...autos, { name: "named", remote_port: block.to }],
  });
  assert.equal(await tunnel.port("named"), block.to);
  const ports = [];
  for (const a of autos) ports.push(await tunnel.port(a.name));
  assert.deepEqual(
    ports.sort((x, y) => x - y),
    Array.from({ length: 7 }, (_, i) => block.from + i),
  );
});

Deno.test("a reset on either end ends the other end at once, not as a half-close", async () => {
  const { connect, createServer } = await import("node:net");
  // "held" keeps each connection open until the test is done with it.
  const held: Deno.TcpConn[] = [];
  let heldArrived!: () => void;
  const heldReady = new Promise<void>((r) => heldArrived = r);
  const holder = localApp(async (conn) => {
    held.push(conn);
    heldArrived();
    await new Promise(() => {}); // until app.close()
  });
  // "resetter" answers its first bytes with a TCP reset.
  const resetter = createServer((socket) => {
    socket.on("error", () => {});
    socket.once("data", () => socket.resetAndDestroy());
  });
  await new Promise<void>((r) => resetter.listen(0, "127.0.0.1", () => r()));
  const resetterPort = (resetter.address() as { port: number }).port;
  // Disposed last to first: the tunnel (and the holder) stop before the resetter closes.
  await using stack = new AsyncDisposableStack();
  stack.defer(() => new Promise<void>((r) => resetter.close(() => r())));
  const tunnel = stack.use(
    await startTunnel({
      group: "resets",
      token: TOKEN,
      app: holder,
      apps: [{ name: "held" }, { name: "resetter", local: `127.0.0.1:${resetterPort}` }],
    }),
  );
  const { client, server } = tunnel;
  const heldPort = await tunnel.port("held");
  const resetterPublic = await tunnel.port("resetter");

  // 1. The user resets: the app's connection is closed entirely.
  const socket = connect(heldPort, "127.0.0.1");
  socket.on("error", () => {});
  await new Promise<void>((r) => socket.once("connect", () => r()));
  socket.write("hello");
  await heldReady;
  const appSide = held[0] as Deno.TcpConn;
  assert.equal(await appSide.read(new Uint8Array(5)), 5);
  const mark = client.stderr.count;
  socket.resetAndDestroy();
  await client.stderr.wait(/resets\/held: user .* aborted by the user side/, 5000, mark);
  assert.ok(await fullyClosed(appSide), "the app's connection was only half-closed");

  // 2. The app resets: the user's connection is closed entirely.
  const serverMark = server.proc.stderr.count;
  const user = await Deno.connect({ hostname: "127.0.0.1", port: resetterPublic });
  await writeAll(user, new TextEncoder().encode("hi"));
  await server.proc.stderr.wait(
    /on resets\/resetter closed: the app side reset or failed/,
    5000,
    serverMark,
  );
  assert.ok(await fullyClosed(user), "the user's connection was only half-closed");
  user.close();
});
