/**
 * UDP apps end to end (CONTRACT "UDP apps"): real server and client
 * processes, real UDP sockets on both sides, `dig` against a DNS responder
 * through the tunnel.
 */

import assert from "node:assert/strict";
import {
  freePort,
  groupFile,
  localApp,
  portBlock,
  randomBytes,
  readyPort,
  sha256,
  startClient,
  startServer,
  startTunnel,
  writeAll,
} from "../helpers/harness.ts";
import { DNS_ANSWER, dnsResponder, udpEcho, UdpUser } from "../helpers/udp.ts";
import { missing } from "../helpers/third_party.ts";
import { makeTempFileSync } from "../helpers/temp.ts";
import { libraryClient, libraryServer } from "../helpers/library.ts";

const TOKEN = "udp-test-token";

Deno.test("udp: datagrams of every size come back byte-exact from the public port", async () => {
  using echo = await udpEcho();
  await using t = await startTunnel({
    group: "udp-echo",
    token: TOKEN,
    apps: [{ name: "echo", type: "udp", local: echo.addr }],
  });
  const port = await readyPort(t.client, "udp-echo", "echo", 0, 15_000, "udp://");
  using user = await UdpUser.open();
  const first = await user.ask(new Uint8Array([7]), port);
  assert.deepEqual(first.payload, new Uint8Array([7]));
  assert.equal(first.from, `127.0.0.1:${port}`);
  for (const size of [1, 2, 63, 512, 1200, 1472, 4096, 16_384, 32_768, 61_440]) {
    const payload = randomBytes(size);
    await user.send(payload, port);
    const got = await user.receive();
    assert.equal(got.payload.length, size);
    assert.equal(await sha256(got.payload), await sha256(payload), `${size} bytes`);
    assert.equal(got.from, `127.0.0.1:${port}`);
  }
  assert.equal(echo.sources.size, 1, "one user, one socket at the local service");
});

const digMissing = missing("dig");

Deno.test({
  name: "udp: dig gets its answer from a DNS responder through the tunnel",
  ignore: digMissing !== undefined,
  fn: async () => {
    using dns = await dnsResponder();
    await using t = await startTunnel({
      group: "udp-dns",
      token: TOKEN,
      apps: [{ name: "dns", type: "udp", local: dns.addr }],
    });
    const port = await readyPort(t.client, "udp-dns", "dns", 0, 15_000, "udp://");
    const dig = (...args: string[]) =>
      new Deno.Command("dig", {
        args: ["@127.0.0.1", "-p", String(port), "+tries=5", "+time=2", ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
    const short = await dig("+short", "www.example.test", "A");
    assert.equal(new TextDecoder().decode(short.stdout).trim(), DNS_ANSWER);
    const full = await dig("burrow.example.test", "A");
    const text = new TextDecoder().decode(full.stdout);
    assert.match(text, /status: NOERROR/);
    assert.match(text, new RegExp(`burrow\\.example\\.test\\.\\s+60\\s+IN\\s+A\\s+${DNS_ANSWER}`));
    assert.match(text, new RegExp(`SERVER: 127\\.0\\.0\\.1#${port}`));
  },
});

Deno.test("udp: 50 concurrent users each get only their own replies, each from a socket of its own", async () => {
  using echo = await udpEcho();
  await using t = await startTunnel({
    group: "udp-many",
    token: TOKEN,
    apps: [{ name: "echo", type: "udp", local: echo.addr }],
  });
  const port = await readyPort(t.client, "udp-many", "echo", 0, 15_000, "udp://");
  const users = await Promise.all(Array.from({ length: 50 }, () => UdpUser.open()));
  try {
    const encoder = new TextEncoder();
    await Promise.all(users.map(async (user, i) => {
      const hello = await user.ask(encoder.encode(`user ${i} hello`), port);
      assert.equal(new TextDecoder().decode(hello.payload), `user ${i} hello`);
      for (let j = 0; j < 10; j++) {
        const payload = encoder.encode(`user ${i} datagram ${j} `.padEnd(100 + i * 10, "x"));
        await user.send(payload, port);
        const got = await user.receive();
        assert.deepEqual(got.payload, payload, `user ${i}, datagram ${j}`);
      }
      assert.equal(user.queued, 0, `user ${i} got datagrams that were not its own`);
    }));
    assert.equal(echo.sources.size, 50, "one socket at the local service per user");
  } finally {
    for (const user of users) user.close();
  }
});

Deno.test("udp: a flow idle for udp_idle_timeout ends on both sides; the next datagram opens a new one", async () => {
  using echo = await udpEcho();
  await using t = await startTunnel({
    group: "udp-idle",
    token: TOKEN,
    apps: [{ name: "echo", type: "udp", local: echo.addr, udp_idle_timeout: 0.5 }],
  });
  const port = await readyPort(t.client, "udp-idle", "echo", 0, 15_000, "udp://");
  using user = await UdpUser.open();
  await user.ask(new Uint8Array([1]), port);
  assert.equal(echo.sources.size, 1);
  const userAddr = `127\\.0\\.0\\.1:${user.port}`;
  await t.server.proc.stderr.wait(new RegExp(`udp flow of ${userAddr} idle for 0\\.5s: ended`));
  await t.client.stderr.wait(new RegExp(`udp-idle/echo: udp flow of ${userAddr} ended`));
  const again = await user.ask(new Uint8Array([2]), port);
  assert.deepEqual(again.payload, new Uint8Array([2]));
  assert.equal(echo.sources.size, 2, "a new flow: a new socket at the client");
});

Deno.test("udp: past limits.udp_flows_per_app a new address's datagrams are dropped, counted and logged", async () => {
  using echo = await udpEcho();
  const config = makeTempFileSync({ prefix: "burrow-server-", suffix: ".yaml" });
  Deno.writeTextFileSync(config, "limits:\n  udp_flows_per_app: 3\n");
  await using t = await startTunnel({
    group: "udp-limit",
    token: TOKEN,
    apps: [{ name: "echo", type: "udp", local: echo.addr, udp_idle_timeout: 2 }],
    server: { args: ["--config", config] },
  });
  const port = await readyPort(t.client, "udp-limit", "echo", 0, 15_000, "udp://");
  const users = await Promise.all(Array.from({ length: 4 }, () => UdpUser.open()));
  try {
    for (const user of users.slice(0, 3)) await user.ask(new Uint8Array([1]), port);
    const fourth = users[3] as UdpUser;
    await fourth.send(new Uint8Array([4]), port);
    await t.server.proc.stderr.wait(
      /udp-limit\/echo: dropped datagrams from a new address 127\.0\.0\.1: the app has its 3 udp flows open \(limits\.udp_flows_per_app\)/,
    );
    await assert.rejects(fourth.receive(1_000), /no datagram/);
    assert.equal(echo.sources.size, 3, "the fourth user never reached the local service");
    // Once the first flows are idle and gone, the fourth user gets in.
    const back = await fourth.ask(new Uint8Array([5]), port, 20, 500);
    assert.deepEqual(back.payload, new Uint8Array([5]));
  } finally {
    for (const user of users) user.close();
  }
});

Deno.test("udp: port refusals, and udp and tcp claims of one port number are apart", async () => {
  using echo = await udpEcho();
  const block = portBlock(4);
  await using t = await startTunnel({
    group: "holder",
    token: TOKEN,
    apps: [
      { name: "u", type: "udp", local: echo.addr, remote_port: block.from },
      { name: "t", remote_port: block.from + 1 },
    ],
    server: { ports: block.spec },
  });
  assert.equal(await readyPort(t.client, "holder", "u", 0, 15_000, "udp://"), block.from);
  assert.equal(await readyPort(t.client, "holder", "t"), block.from + 1);
  const addr = `127.0.0.1:${t.server.port}`;
  const one = (port: number, type: "udp" | "tcp" = "udp") =>
    groupFile({
      server: addr,
      token: TOKEN,
      group: "other",
      apps: [{ name: "b", type, local: echo.addr, remote_port: port }],
    });
  const expectRefusal = async (file: string, code: string, text: RegExp) => {
    const c = startClient(file);
    assert.equal(await c.exitCode(), 3, c.stderr.text);
    assert.match(
      c.stderr.text,
      new RegExp(`refused by the server: .*${text.source}.*\\(${code}\\)`),
    );
  };
  await expectRefusal(one(block.from), "port_taken", /udp port \d+ is taken by holder\/u/);
  await expectRefusal(one(block.to + 10), "port_not_allowed", /outside the server's allowed ports/);
  // Another program on the server host holds a udp port in range.
  using _squatter = await UdpUser.open(block.to);
  await expectRefusal(one(block.to), "port_taken", /udp port \d+ is in use on the server host/);
  // The tcp port of the udp app's number is free for a tcp app, and the reverse.
  const tcp = startClient(one(block.from, "tcp"));
  try {
    assert.equal(await readyPort(tcp, "other", "b"), block.from);
  } finally {
    await tcp.stop();
  }
  const udp = startClient(one(block.from + 1, "udp"));
  try {
    assert.equal(await readyPort(udp, "other", "b", 0, 15_000, "udp://"), block.from + 1);
  } finally {
    await udp.stop();
  }
});

Deno.test("udp: datagrams get through promptly while a bulk tcp stream fills the same group's link", async () => {
  using echo = await udpEcho();
  let sunk = 0;
  using sink = localApp(async (conn) => {
    const buf = new Uint8Array(256 * 1024);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) return;
      sunk += n;
    }
  });
  await using t = await startTunnel({
    group: "udp-bulk",
    token: TOKEN,
    apps: [
      { name: "echo", type: "udp", local: echo.addr },
      { name: "bulk", local: sink.addr },
    ],
  });
  const udpPort = await readyPort(t.client, "udp-bulk", "echo", 0, 15_000, "udp://");
  const tcpPort = await readyPort(t.client, "udp-bulk", "bulk");
  using user = await UdpUser.open();
  await user.ask(new Uint8Array([0]), udpPort);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: tcpPort });
  let stop = false;
  const chunk = randomBytes(1024 * 1024);
  const pumping = (async () => {
    while (!stop) await writeAll(conn, chunk);
  })().catch(() => {});
  try {
    // Wait until the bulk stream really flows through the tunnel.
    while (sunk < 32 * 1024 * 1024) await new Promise((r) => setTimeout(r, 20));
    const before = sunk;
    const rtts: number[] = [];
    for (let i = 0; i < 40; i++) {
      const payload = randomBytes(1200);
      const t0 = performance.now();
      await user.send(payload, udpPort);
      const got = await user.receive(5_000);
      rtts.push(performance.now() - t0);
      assert.deepEqual(got.payload, payload);
    }
    assert.ok(sunk - before > 8 * 1024 * 1024, `the bulk stream kept flowing (${sunk - before} B)`);
    rtts.sort((a, b) => a - b);
    const median = rtts[rtts.length >> 1] as number;
    // Generous for a loaded machine; a datagram queued behind bulk data would
    // wait for megabytes of stream data to be written first.
    assert.ok(median < 250, `median round trip ${median.toFixed(1)} ms under a bulk stream`);
  } finally {
    stop = true;
    conn.close();
    await pumping;
  }
});

Deno.test("udp: a killed client frees the udp port for anyone; a new client can claim it", async () => {
  using echo = await udpEcho();
  const block = portBlock(100);
  await using t = await startTunnel({
    group: "udp-kill",
    token: TOKEN,
    apps: [{ name: "echo", type: "udp", local: echo.addr }],
    server: { ports: block.spec },
  });
  const port = await readyPort(t.client, "udp-kill", "echo", 0, 15_000, "udp://");
  using user = await UdpUser.open();
  await user.ask(new Uint8Array([1]), port);
  t.client.kill("SIGKILL");
  await t.server.proc.stderr.wait(new RegExp(`group udp-kill .* ended: .*freed port.*udp ${port}`));
  // The port is really free (soon after the log line): another program may bind it.
  const deadline = Date.now() + 5_000;
  let holder: UdpUser | undefined;
  while (holder === undefined) {
    holder = await UdpUser.open(port).catch((err) => {
      if (Date.now() > deadline) throw err;
      return new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 10));
    });
  }
  assert.equal(holder.port, port);
  holder.close();
  // A new client asking for that port gets it.
  const again = t.addClient("udp-kill", {
    apps: [{ name: "echo", type: "udp", local: echo.addr, remote_port: port }],
  });
  assert.equal(await readyPort(again, "udp-kill", "echo", 0, 15_000, "udp://"), port);
  const back = await user.ask(new Uint8Array([2]), port);
  assert.deepEqual(back.payload, new Uint8Array([2]));
});

Deno.test("udp: after the server restarts, the reconnecting client gets the same udp port back", async () => {
  await using stack = new AsyncDisposableStack();
  using echo = await udpEcho();
  const block = portBlock(100); // wide, so getting the same port back is no accident
  const controlPort = freePort();
  const first = await startServer({ token: TOKEN, ports: block.spec, bindPort: controlPort });
  stack.use(first.proc);
  const file = groupFile({
    server: `127.0.0.1:${controlPort}`,
    token: TOKEN,
    group: "udp-back",
    apps: [{ name: "echo", type: "udp", local: echo.addr }],
  });
  const client = stack.use(startClient(file));
  const port = await readyPort(client, "udp-back", "echo", 0, 15_000, "udp://");
  using user = await UdpUser.open();
  await user.ask(new Uint8Array([1]), port);
  first.proc.kill("SIGKILL");
  await first.proc.status;
  const from = client.stdout.count;
  const second = await startServer({ token: TOKEN, ports: block.spec, bindPort: controlPort });
  stack.use(second.proc);
  assert.equal(await readyPort(client, "udp-back", "echo", from, 20_000, "udp://"), port);
  const back = await user.ask(new Uint8Array([2]), port);
  assert.deepEqual(back.payload, new Uint8Array([2]));
});

Deno.test('udp: the library\'s expose({ type: "udp" }) works, services() and close() included', async () => {
  using echo = await udpEcho();
  await using server = await libraryServer({ token: TOKEN });
  await using client = await libraryClient(server, { token: TOKEN, group: "udp-lib" });
  const tunnel = await client.expose({
    name: "echo",
    type: "udp",
    local: echo.addr,
    udpIdleTimeout: 5,
  });
  assert.equal(tunnel.transport, "udp");
  const [status] = client.status().apps;
  assert.equal(status?.publicAddr, `udp://127.0.0.1:${tunnel.remotePort}`);
  using user = await UdpUser.open();
  const payload = randomBytes(1000);
  assert.deepEqual((await user.ask(payload, tunnel.remotePort)).payload, payload);
  const [service] = server.services();
  assert.equal(service?.transport, "udp");
  assert.equal(service?.port, tunnel.remotePort);
  assert.equal(service?.connections, 1, "one flow open");
  assert.ok((service?.bytesIn ?? 0) >= 1000);
  await assert.rejects(
    client.expose({ name: "bad", type: "udp", local: echo.addr, proxyProtocol: "v1" }),
    /proxyProtocol is not an option of a udp app/,
  );
  const port = tunnel.remotePort;
  await tunnel.close();
  // close() resolves once the port is free: another program can bind it at once.
  using holder = await UdpUser.open(port);
  assert.equal(holder.port, port);
});
