/**
 * The library API of CONTRACT.md, in one process: two servers and several
 * clients side by side, expose and close, services(), freePorts(), and
 * refusals as RefusedError with their codes.
 */

import assert from "node:assert/strict";
import { RefusedError, startClient, startServer } from "../../mod.ts";
import { asTestClient, libraryServer } from "../helpers/library.ts";
import {
  echoApp,
  echoThrough,
  portBlock,
  randomBytes,
  sha256,
  waitRefused,
} from "../helpers/harness.ts";

Deno.test("two servers and several clients in one process; expose, services, close", async () => {
  const app = echoApp();
  const blocks = [portBlock(20), portBlock(20)];
  const servers = await Promise.all(
    blocks.map((b, i) =>
      startServer({
        bind: "127.0.0.1:0",
        token: `lib-token-${i}`,
        ports: b.spec,
        publicHost: "127.0.0.1",
      })
    ),
  );
  const clients = await Promise.all(
    servers.map((s, i) =>
      startClient({ server: `127.0.0.1:${s.addr.port}`, token: `lib-token-${i}`, group: "lab" })
    ),
  );
  try {
    const tunnels = await Promise.all(
      clients.map((c) => c.expose({ name: "echo", local: app.addr })),
    );
    for (const [i, t] of tunnels.entries()) {
      const block = blocks[i] as { from: number; to: number };
      assert.ok(
        t.remotePort >= block.from && t.remotePort <= block.to,
        `port ${t.remotePort} in ${i}'s range`,
      );
      const data = randomBytes(300_000);
      assert.equal(await echoThrough(t.remotePort, data), await sha256(data));
    }
    const [service] = servers[0]!.services();
    assert.equal(service?.group, "lab");
    assert.equal(service?.app, "echo");
    assert.equal(service?.port, tunnels[0]!.remotePort);
    assert.equal(service?.bytesIn, 300_000);
    assert.equal(service?.bytesOut, 300_000);
    assert.equal(service?.connections, 0);
    assert.ok(service?.since instanceof Date);

    const free = await clients[0]!.freePorts();
    assert.equal(free.length, 19);
    assert.ok(!free.includes(tunnels[0]!.remotePort));

    await tunnels[0]!.close();
    assert.equal(await tunnels[0]!.closed, undefined);
    assert.ok(await waitRefused(tunnels[0]!.remotePort), "the closed tunnel's port still accepts");
    assert.equal(servers[0]!.services().length, 0);
    // The client stays connected: a new tunnel works at once.
    const again = await clients[0]!.expose({
      name: "again",
      local: app.addr,
      remotePort: blocks[0]!.from,
    });
    assert.equal(again.remotePort, blocks[0]!.from);
    const data = randomBytes(1000);
    assert.equal(await echoThrough(again.remotePort, data), await sha256(data));
    // The other server never saw any of this.
    assert.deepEqual(servers[1]!.services().map((s) => s.app), ["echo"]);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(servers.map((s) => s.close()));
    app.close();
  }
});

Deno.test("refusals reject with RefusedError and a code", async () => {
  const block = portBlock(3);
  await using server = await libraryServer({
    token: "t0k",
    ports: block.spec,
  });
  const addr = `127.0.0.1:${server.addr.port}`;
  await using client = asTestClient(
    await startClient({ server: addr, token: "t0k", group: "owner" }),
  );
  await client.expose({ name: "a", local: "127.0.0.1:9", remotePort: block.from });
  const code = async (p: Promise<unknown>) => {
    const err = await p.then(() => undefined, (e) => e);
    assert.ok(err instanceof RefusedError, `expected a RefusedError, got ${err}`);
    return err.code;
  };
  assert.equal(
    await code(client.expose({ name: "b", local: "127.0.0.1:9", remotePort: block.from })),
    "port_taken",
  );
  assert.equal(
    await code(client.expose({ name: "c", local: "127.0.0.1:9", remotePort: 1 })),
    "port_not_allowed",
  );
  assert.equal(await code(client.expose({ name: "a", local: "127.0.0.1:9" })), "app_exists");
  assert.equal(
    await code(startClient({ server: addr, token: "wrong", group: "x" })),
    "auth_failed",
  );
  assert.equal(
    await code(startClient({ server: addr, token: "t0k", group: "owner" })),
    "group_live",
  );
  // The refused calls left the live client untouched.
  assert.deepEqual(server.services().map((s) => `${s.app}:${s.port}`), [`a:${block.from}`]);
});

Deno.test("freePorts answers past the frame's range cap, marked as truncated on the wire", async () => {
  // 5000 scattered ports are 5000 separate ranges: more than one answer carries.
  const ports = Array.from({ length: 5000 }, (_, i) => 20_000 + i * 2);
  await using server = await libraryServer({
    token: "t",
    ports: ports.join(","),
  });
  await using client = asTestClient(
    await startClient({
      server: `127.0.0.1:${server.addr.port}`,
      token: "t",
      group: "many",
    }),
  );
  const free = await client.freePorts();
  assert.equal(free.length, 4096);
  assert.deepEqual(free.slice(0, 3), [20_000, 20_002, 20_004]);
  // The session survived the large answer.
  assert.equal((await client.freePorts()).length, 4096);
});

Deno.test("a closed tunnel's port can be claimed again the moment close() resolves", async () => {
  const block = portBlock(2);
  await using server = await libraryServer({
    token: "t",
    ports: block.spec,
  });
  await using client = asTestClient(
    await startClient({
      server: `127.0.0.1:${server.addr.port}`,
      token: "t",
      group: "churn",
    }),
  );
  for (let i = 0; i < 20; i++) {
    const tunnel = await client.expose({
      name: `app-${i}`,
      local: "127.0.0.1:9",
      remotePort: block.from,
    });
    assert.equal(tunnel.remotePort, block.from);
    await tunnel.close();
  }
});
