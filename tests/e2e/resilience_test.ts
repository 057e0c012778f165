/**
 * Resilience end to end, with real processes: clients that are killed or
 * frozen, a server that restarts or falls silent, group takeover, a user
 * who never gets a work connection, and clean stops on SIGINT and SIGTERM.
 * Every wait is for an event (an output line, a refused connect, an exit);
 * the only clocks are upper bounds and the elapsed times being checked.
 */

import assert from "node:assert/strict";
import {
  assertEchoes,
  echoApp,
  freePort,
  groupFile,
  type LocalApp,
  type PortBlock,
  portBlock,
  type Proc,
  randomBytes,
  readAll,
  readyPort,
  type ServerProcOptions,
  sha256,
  startClient,
  startServer,
  waitRefused,
  writeAll,
} from "../helpers/harness.ts";
import { FreezableProxy } from "../helpers/relays.ts";

const TOKEN = "resilience-token-41c9";

/** Starts a client for one group whose apps all point at `app`. */
function client(
  serverPort: number,
  group: string,
  apps: Array<{ name: string; remote_port?: number }>,
  app: LocalApp,
  heartbeatInterval?: number,
): Proc {
  return startClient(groupFile({
    server: `127.0.0.1:${serverPort}`,
    token: TOKEN,
    group,
    ...(heartbeatInterval === undefined ? {} : { heartbeat_interval: heartbeatInterval }),
    apps: apps.map((a) => ({ ...a, local: app.addr })),
  }));
}

/**
 * Starts an echo app and a server (with TOKEN, on a fresh block of public
 * ports, and the options in `o`) that `stack` stops and closes.
 */
async function echoServer(
  stack: AsyncDisposableStack,
  o: Omit<ServerProcOptions, "token" | "ports"> = {},
): Promise<{ app: LocalApp; block: PortBlock; server: Proc; serverPort: number }> {
  const app = echoApp();
  stack.defer(() => app.close());
  const block = portBlock();
  const { proc: server, port: serverPort } = await startServer({
    token: TOKEN,
    ports: block.spec,
    ...o,
  });
  stack.use(server);
  return { app, block, server, serverPort };
}

/** Seconds since `t0`, for messages and bounds. */
function since(t0: number): number {
  return (Date.now() - t0) / 1000;
}

/** Writes `data` on an open echo connection and checks the same bytes come back. */
async function roundTrip(conn: Deno.TcpConn, data: Uint8Array<ArrayBuffer>): Promise<void> {
  const [, back] = await Promise.all([writeAll(conn, data), readAll(conn, data.length)]);
  assert.equal(back.length, data.length, "echo came back short");
  assert.equal(await sha256(back as Uint8Array<ArrayBuffer>), await sha256(data));
}

Deno.test("a killed client's port closes and is claimed again at once; other groups carry on", async () => {
  await using stack = new AsyncDisposableStack();
  const { app, block, server, serverPort } = await echoServer(stack);
  const claimed = block.from + 3;
  const victim = stack.use(
    client(serverPort, "victim", [{ name: "echo", remote_port: claimed }], app),
  );
  // The bystander starts once the victim holds its named port, so its
  // server-picked port can never be that one.
  assert.equal(await readyPort(victim, "victim", "echo"), claimed);
  const bystander = stack.use(client(serverPort, "bystander", [{ name: "echo" }], app));
  const otherPort = await readyPort(bystander, "bystander", "echo");

  // A user of the other group stays connected across the kill.
  const user = await Deno.connect({ hostname: "127.0.0.1", port: otherPort });
  stack.defer(() => {
    try {
      user.close();
    } catch { /* closed */ }
  });
  await roundTrip(user, randomBytes(300_000));

  victim.kill("SIGKILL");
  assert.equal((await victim.status).signal, "SIGKILL");
  const ended = await server.stderr.wait(/group victim from \S+ ended: (.*)$/);
  assert.match(ended[1] as string, new RegExp(`freed port ${claimed}\\b`));
  assert.ok(await waitRefused(claimed, 1_000), `port ${claimed} still accepts after the kill`);

  await roundTrip(user, randomBytes(300_000));
  const t0 = Date.now();
  const successor = stack.use(
    client(serverPort, "victim", [{ name: "echo", remote_port: claimed }], app),
  );
  assert.equal(await readyPort(successor, "victim", "echo"), claimed);
  assert.ok(since(t0) < 5, `the successor took ${since(t0)}s to claim the port`);
  await assertEchoes(claimed);

  await roundTrip(user, randomBytes(300_000));
  await user.closeWrite();
  assert.equal((await readAll(user)).length, 0, "the echo sent bytes after the half-close");
  await assertEchoes(otherPort, 4 * 1024 * 1024);
});

Deno.test("a frozen client is reaped by the heartbeat and its port is free again", async () => {
  await using stack = new AsyncDisposableStack();
  const { app, block, server, serverPort } = await echoServer(stack, { heartbeatTimeout: 2 });
  const claimed = block.from + 11;
  const frozen = stack.use(
    client(serverPort, "sleeper", [{ name: "echo", remote_port: claimed }], app, 0.5),
  );
  assert.equal(await readyPort(frozen, "sleeper", "echo"), claimed);
  await assertEchoes(claimed);

  const t0 = Date.now();
  frozen.kill("SIGSTOP");
  const ended = await server.stderr.wait(/group sleeper from \S+ ended: (.*)$/, 8_000);
  const after = since(t0);
  assert.match(ended[1] as string, /^silent for \d+s/);
  assert.match(ended[1] as string, new RegExp(`freed port ${claimed}\\b`));
  // Pings came every 0.5 s before the freeze, so the 2 s timeout needs 1.5 s at least.
  assert.ok(after >= 1.4 && after < 5, `reaped ${after}s after the freeze`);
  assert.ok(await waitRefused(claimed, 1_000), `port ${claimed} still accepts after the reaping`);

  const heir = stack.use(client(serverPort, "heir", [{ name: "echo", remote_port: claimed }], app));
  assert.equal(await readyPort(heir, "heir", "echo"), claimed);
  await assertEchoes(claimed);

  // Thawed, the old client finds its session gone; its port is now another
  // group's, a final refusal (Behaviour 6), so it exits 3 naming it.
  const from = frozen.stderr.count;
  frozen.kill("SIGCONT");
  await frozen.stderr.wait(/lost server/, 5_000, from);
  assert.equal(await frozen.exitCode(10_000), 3);
  assert.match(frozen.stderr.text, /refused by the server: .*\(port_taken\)/);
  await assertEchoes(claimed);
});

Deno.test("clients survive a server restart by themselves and get their ports back", async () => {
  await using stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  // A wide block, so a port-0 app that gets the same port back is no accident.
  const block = portBlock(100);
  const controlPort = freePort();
  const first = await startServer({ token: TOKEN, ports: block.spec, bindPort: controlPort });
  stack.use(first.proc);
  assert.equal(first.port, controlPort);
  const fixed = block.from + 42;
  const agent = stack.use(
    client(controlPort, "restart", [{ name: "auto" }, { name: "fixed", remote_port: fixed }], app),
  );
  const auto = await readyPort(agent, "restart", "auto");
  assert.equal(await readyPort(agent, "restart", "fixed"), fixed);
  await assertEchoes(auto);
  await assertEchoes(fixed);

  const lost = agent.stderr.count;
  first.proc.kill("SIGKILL");
  assert.equal((await first.proc.status).signal, "SIGKILL");
  await agent.stderr.wait(/lost server 127\.0\.0\.1:\d+: .*reconnecting in/, 5_000, lost);
  assert.ok(await waitRefused(auto, 1_000), "the dead server's public port still accepts");

  const from = agent.stdout.count;
  const t0 = Date.now();
  const second = await startServer({ token: TOKEN, ports: block.spec, bindPort: controlPort });
  stack.use(second.proc);
  assert.equal(await readyPort(agent, "restart", "auto", from, 20_000), auto);
  assert.equal(await readyPort(agent, "restart", "fixed", from, 20_000), fixed);
  assert.ok(since(t0) < 15, `re-registered ${since(t0)}s after the new server started`);
  await second.proc.stderr.wait(/group restart connected from /);
  await assertEchoes(auto, 2 * 1024 * 1024);
  await assertEchoes(fixed, 2 * 1024 * 1024);
});

Deno.test("a client started before its server keeps retrying and registers once it appears", async () => {
  await using stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const block = portBlock();
  const controlPort = freePort();
  const early = stack.use(client(controlPort, "early", [{ name: "echo" }], app));
  // Two failed attempts: it retries rather than giving up after the first.
  await early.stderr.wait(/cannot reach server 127\.0\.0\.1:\d+: .*; retrying in/, 10_000);
  const firstRetry = early.stderr.all.findIndex((l) => /retrying in/.test(l));
  await early.stderr.wait(/cannot reach server .*; retrying in/, 10_000, firstRetry + 1);
  assert.equal(early.stdout.count, 0, "ready before any server listened");

  const server = await startServer({ token: TOKEN, ports: block.spec, bindPort: controlPort });
  stack.use(server.proc);
  const port = await readyPort(early, "early", "echo", 0, 20_000);
  assert.ok(port >= block.from && port <= block.to, `port ${port} outside ${block.spec}`);
  await assertEchoes(port);
});

Deno.test("a frozen client's group is taken over; a live one's is refused with exit 3", async () => {
  await using stack = new AsyncDisposableStack();
  const { app, block, server, serverPort } = await echoServer(stack, { heartbeatTimeout: 30 });
  const claimed = block.from + 17;
  const apps = [{ name: "echo", remote_port: claimed }];
  const first = stack.use(client(serverPort, "shared", apps, app));
  assert.equal(await readyPort(first, "shared", "echo"), claimed);

  // While the first client answers, another process may not have its group.
  const intruder = stack.use(client(serverPort, "shared", apps, app));
  assert.equal(await intruder.exitCode(10_000), 3);
  assert.match(intruder.stderr.text, /refused by the server: .*\(group_live\)/);
  assert.equal(intruder.stdout.count, 0, "the refused client printed a ready line");
  await assertEchoes(claimed);

  first.kill("SIGSTOP");
  const t0 = Date.now();
  const second = stack.use(client(serverPort, "shared", apps, app));
  assert.equal(await readyPort(second, "shared", "echo", 0, 10_000), claimed);
  const took = since(t0);
  assert.ok(took >= 2.5 && took < 6, `takeover took ${took}s (the probe waits 3s)`);
  const ended = await server.stderr.wait(/group shared from \S+ ended: (.*)$/);
  assert.match(ended[1] as string, /taken over by/);
  await assertEchoes(claimed);

  // Woken up, the old client finds its group live elsewhere: a final refusal.
  first.kill("SIGCONT");
  assert.equal(await first.exitCode(15_000), 3);
  assert.match(first.stderr.text, /refused by the server: .*\(group_live\)/);
  await assertEchoes(claimed);
  assert.equal(second.stdout.count, 1, "the new owner re-registered after the old one woke");
  const ends = server.stderr.all.filter((line) => /group shared from \S+ ended/.test(line));
  assert.equal(ends.length, 1, `the group changed hands more than once:\n${ends.join("\n")}`);
});

Deno.test("a client notices a silent server, reconnects, and replaces its own old session", async () => {
  await using stack = new AsyncDisposableStack();
  const { app, block, server, serverPort } = await echoServer(stack, { heartbeatTimeout: 30 });
  const proxy = stack.use(new FreezableProxy(serverPort));
  const claimed = block.from + 23;
  const agent = stack.use(
    client(
      proxy.port,
      "quiet",
      [{ name: "auto" }, { name: "fixed", remote_port: claimed }],
      app,
      0.5,
    ),
  );
  const auto = await readyPort(agent, "quiet", "auto");
  assert.equal(await readyPort(agent, "quiet", "fixed"), claimed);
  await assertEchoes(auto);

  const lost = agent.stderr.count;
  const t0 = Date.now();
  proxy.freeze();
  await agent.stderr.wait(/lost server \S+: server silent for \d+s/, 6_000, lost);
  const noticed = since(t0);
  // Dead after 1.5 s without a pong; the last one came up to 0.5 s before the freeze.
  assert.ok(noticed >= 0.9 && noticed < 4, `noticed the silence after ${noticed}s`);
  // The server heard nothing either, but its 30 s timeout is far off: the group is still live.
  assert.doesNotMatch(server.stderr.text, /group quiet from \S+ ended/);

  const from = agent.stdout.count;
  proxy.thaw();
  assert.equal(await readyPort(agent, "quiet", "auto", from, 10_000), auto);
  assert.equal(await readyPort(agent, "quiet", "fixed", from, 10_000), claimed);
  const ended = await server.stderr.wait(/group quiet from \S+ ended: (.*)$/, 1_000);
  assert.match(ended[1] as string, /^replaced by the same client reconnecting/);
  assert.ok(since(t0) < 10, `back after ${since(t0)}s, the server's timeout is 30s`);
  await assertEchoes(auto);
  await assertEchoes(claimed);
});

/** Connects a user and resolves with how long the server took to close it, and what it sent. */
async function userClosedAfter(
  port: number,
): Promise<{ address: string; seconds: number; bytes: number }> {
  const t0 = Date.now();
  using user = await Deno.connect({ hostname: "127.0.0.1", port });
  const got = await readAll(user);
  return { address: `127.0.0.1:${user.localAddr.port}`, seconds: since(t0), bytes: got.length };
}

/**
 * Two ways a user gets no working connection to the app, run side by side so
 * the suite waits the 10 s only once: (1) the client's work connections never
 * reach the server (a proxy lets only the control connection through), and
 * (2) the client is frozen, so the idle work connection the server picks never
 * answers `start`.
 */
async function noWorkConnection(stack: AsyncDisposableStack): Promise<{ staleReason: string }> {
  const { app, server, serverPort } = await echoServer(stack, { heartbeatTimeout: 30 });
  // The client's first two connections pass: the one that reads the server's
  // certificate chain, then the control connection. Work connections do not.
  const proxy = stack.use(new FreezableProxy(serverPort, (index) => index <= 1));
  const cutOff = stack.use(client(proxy.port, "cut-off", [{ name: "echo" }], app));
  const frozen = stack.use(client(serverPort, "frozen", [{ name: "echo" }], app));
  const cutOffPort = await readyPort(cutOff, "cut-off", "echo");
  const frozenPort = await readyPort(frozen, "frozen", "echo");
  await assertEchoes(frozenPort);
  // Every work connection of the cut-off client was turned away by the proxy.
  await cutOff.stderr.wait(/work connection failed/);
  frozen.kill("SIGSTOP");
  const [cut, stale] = await Promise.all([
    userClosedAfter(cutOffPort),
    userClosedAfter(frozenPort),
  ]);
  for (const [what, user] of [["cut-off", cut], ["frozen", stale]] as const) {
    assert.equal(user.bytes, 0, `the ${what} user got bytes`);
    assert.ok(
      user.seconds >= 9.5 && user.seconds < 12,
      `the ${what} user was closed after ${user.seconds}s, not 10-12s`,
    );
  }
  const cutLine = await server.stderr.wait(
    new RegExp(`user ${cut.address} on cut-off/echo (.*)$`),
    2_000,
  );
  assert.match(cutLine[1] as string, /no work connection from the client within 10s/);
  const staleLine = await server.stderr.wait(
    new RegExp(`user ${stale.address} on frozen/echo (.*)$`),
    2_000,
  );
  return { staleReason: staleLine[1] as string };
}

Deno.test("a user who gets no work connection is closed within 10-12 s, and the log says why", async () => {
  await using stack = new AsyncDisposableStack();
  const { staleReason } = await noWorkConnection(stack);
  assert.match(
    staleReason,
    /^failed \(the client did not answer on its work connection within 10s\): 0 bytes in, 0 out$/,
  );
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`${signal} stops the client (deregistering at once) and the server, each with exit 0`, async () => {
    await using stack = new AsyncDisposableStack();
    // A 30 s heartbeat timeout: a port that frees within a second was deregistered, not reaped.
    const { app, block, server, serverPort } = await echoServer(stack, { heartbeatTimeout: 30 });
    const leaving = stack.use(
      client(serverPort, "leaving", [{ name: "echo", remote_port: block.from + 1 }], app),
    );
    // "staying" starts once "leaving" holds its named port, so its server-picked
    // port can never be that one (the server cannot order two clients' requests).
    const leavingPort = await readyPort(leaving, "leaving", "echo");
    const staying = stack.use(client(serverPort, "staying", [{ name: "echo" }], app));
    const stayingPort = await readyPort(staying, "staying", "echo");
    await assertEchoes(leavingPort);

    leaving.kill(signal);
    assert.equal(await leaving.exitCode(5_000), 0, `client stderr:\n${leaving.stderr.text}`);
    const ended = await server.stderr.wait(/group leaving from \S+ ended: (.*)$/, 2_000);
    assert.match(ended[1] as string, /^client stopped/);
    assert.ok(await waitRefused(leavingPort, 1_000), `port ${leavingPort} still accepts`);
    // Free at once: another group claims it straight away.
    const next = stack.use(
      client(serverPort, "next", [{ name: "echo", remote_port: leavingPort }], app),
    );
    assert.equal(await readyPort(next, "next", "echo"), leavingPort);
    await assertEchoes(leavingPort);
    await assertEchoes(stayingPort);

    server.kill(signal);
    assert.equal(await server.exitCode(5_000), 0, `server stderr:\n${server.stderr.text}`);
    for (const port of [serverPort, stayingPort, leavingPort]) {
      assert.ok(
        await waitRefused(port, 1_000),
        `port ${port} still accepts after the server stopped`,
      );
    }
    // The clients outlive their server (they retry) and still stop cleanly.
    await staying.stderr.wait(/lost server/, 5_000);
    staying.kill(signal);
    assert.equal(await staying.exitCode(5_000), 0, `client stderr:\n${staying.stderr.text}`);
  });
}
