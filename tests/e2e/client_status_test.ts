/**
 * The client's own status: `client.status()` and the admin API's
 * `GET /api/status` follow the link (connected, lost, retrying, back) and
 * count the bytes of a live tunnel exactly; the status table is printed at
 * start and again after a reconnect; `client.ts` serves the admin key of its
 * group file.
 */

import assert from "node:assert/strict";
import { type ClientStatus, startClient, startServer } from "../../mod.ts";

import { printStatusOnReady } from "../../lib/client/status_table.ts";
import {
  echoApp,
  echoThrough,
  groupFile,
  portBlock,
  randomBytes,
  readyPort,
  sha256,
  startClient as startClientProc,
  startServer as startServerProc,
  until,
} from "../helpers/harness.ts";

Deno.test("client status and admin API follow the link through a server restart", async () => {
  const app = echoApp();
  const ports = portBlock();
  const options = { token: "st", ports: ports.spec, publicHost: "127.0.0.1" };
  let server = await startServer({ bind: "127.0.0.1:0", ...options });
  const controlPort = server.addr.port;
  const client = await startClient({
    server: `127.0.0.1:${controlPort}`,
    token: "st",
    group: "stat",
    admin: "127.0.0.1:0",
    maxBackoffMs: 200,
  });
  const tables: string[] = [];
  printStatusOnReady(client, (t) => tables.push(t), 50);
  const admin = async (): Promise<ClientStatus> => {
    const res = await fetch(`http://127.0.0.1:${client.adminAddr?.port}/api/status`);
    assert.equal(res.status, 200);
    return await res.json();
  };
  try {
    const tunnel = await client.expose({ name: "echo", local: app.addr, remotePort: ports.from });
    const data = randomBytes(50_000);
    assert.equal(await echoThrough(tunnel.remotePort, data), await sha256(data));
    const up = await until(admin, (s) => s.apps[0]?.bytesOut === 50_000);
    assert.equal(up.group, "stat");
    assert.equal(up.server.addr, `127.0.0.1:${controlPort}`);
    assert.equal(up.server.state, "connected");
    assert.deepEqual(up.apps, [{
      name: "echo",
      local: app.addr,
      remotePort: ports.from,
      publicAddr: `127.0.0.1:${ports.from}`,
      state: "live",
      connections: 0,
      connectionsTotal: 1,
      bytesIn: 50_000,
      bytesOut: 50_000,
    }]);
    await until(() => tables.length, (n) => n === 1);
    assert.match(
      tables[0] ?? "",
      /^stat via 127\.0\.0\.1:\d+ \(connected\)\nAPP +LOCAL +PUBLIC +STATE\n/,
    );
    assert.match(
      tables[0] ?? "",
      new RegExp(`echo +${app.addr} +127\\.0\\.0\\.1:${ports.from} +live`),
    );

    // The server goes away: the link is reconnecting and retries count up.
    await server.close();
    const down = await until(
      admin,
      (s) => s.server.state === "reconnecting" && s.server.retries >= 2,
    );
    assert.equal(down.apps[0]?.state, "pending");
    assert.equal(down.apps[0]?.publicAddr, null);
    assert.ok((down.server.lastError ?? "").length > 0);

    // It comes back on the same address: connected again, the app live, the table printed again.
    server = await startServer({ bind: `127.0.0.1:${controlPort}`, ...options });
    const back = await until(admin, (s) => s.apps[0]?.state === "live");
    assert.equal(back.server.state, "connected");
    assert.equal(back.server.reconnects, 1);
    assert.equal(back.server.retries, 0);
    assert.equal(back.apps[0]?.bytesIn, 50_000, "the client's counters carry on");
    await until(() => tables.length, (n) => n === 2);
    const missing = await fetch(`http://127.0.0.1:${client.adminAddr?.port}/nope`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  } finally {
    await client.close();
    await server.close();
    app.close();
  }
  assert.equal(client.status().server.state, "closed");
});

Deno.test("client.ts serves its admin key and prints where", async () => {
  using app = echoApp();
  await using server = await startServerProc({ token: "cli-admin" });
  const file = groupFile({
    server: `127.0.0.1:${server.port}`,
    token: "cli-admin",
    group: "cli-admin",
    apps: [{ name: "echo", local: app.addr }],
  });
  await Deno.writeTextFile(file, "admin: 127.0.0.1:0\n", { append: true });
  await using client = startClientProc(file);
  const port = await readyPort(client, "cli-admin", "echo");
  const m = await client.stdout.wait(/^admin http:\/\/127\.0\.0\.1:(\d+)\/api\/status$/);
  const status: ClientStatus = await until(
    () => fetch(`http://127.0.0.1:${m[1]}/api/status`).then((r) => r.json()),
    (s: ClientStatus) => s.apps[0]?.state === "live",
  );
  assert.equal(status.apps[0]?.remotePort, port);
  assert.equal(status.server.state, "connected");
  assert.ok(!JSON.stringify(status).includes("cli-admin-token"));
  // stderr is a pipe here, not a terminal: no table on it.
  assert.ok(!client.stderr.text.includes("APP  LOCAL"), "no table when stderr is not a terminal");
});
