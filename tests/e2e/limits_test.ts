/**
 * Per-tunnel limits (maximum connections, concurrent users, serve time):
 * the server enforces them, and a tunnel that reaches one closes itself.
 */

import assert from "node:assert/strict";
import { libraryClient, libraryServer } from "../helpers/library.ts";
import {
  echoApp,
  echoThrough,
  randomBytes,
  readAll,
  sha256,
  waitRefused,
  writeAll,
} from "../helpers/harness.ts";

/** An echo app, a server and a client of it (group `limited`), closed by `await using`. */
async function setUp() {
  const stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const server = stack.use(await libraryServer({ token: "lim", portCount: 10 }));
  const client = stack.use(await libraryClient(server, { token: "lim", group: "limited" }));
  return { app, server, client, [Symbol.asyncDispose]: () => stack.disposeAsync() };
}

/** An echoing user that stays connected until closed. */
async function heldUser(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, new Uint8Array([7]));
  const one = new Uint8Array(1);
  assert.equal(await conn.read(one), 1);
  return conn;
}

Deno.test("maxConnections: the last allowed user is served, then the tunnel closes itself", async () => {
  await using t = await setUp();
  const tunnel = await t.client.expose({
    name: "thrice",
    local: t.app.addr,
    limits: { maxConnections: 3 },
  });
  for (let i = 0; i < 3; i++) {
    const data = randomBytes(10_000 + i);
    assert.equal(await echoThrough(tunnel.remotePort, data), await sha256(data));
  }
  assert.equal(await tunnel.closed, undefined);
  assert.ok(
    await waitRefused(tunnel.remotePort),
    "the port still accepts after the last connection",
  );
  assert.deepEqual(t.server.services(), []);
  // The client stays connected and may expose again.
  const again = await t.client.expose({ name: "again", local: t.app.addr });
  const data = randomBytes(1000);
  assert.equal(await echoThrough(again.remotePort, data), await sha256(data));
});

Deno.test("maxUsers: users past the limit are turned away at once, and let in when one leaves", async () => {
  await using t = await setUp();
  const tunnel = await t.client.expose({
    name: "pair",
    local: t.app.addr,
    limits: { maxUsers: 2 },
  });
  const first = await heldUser(tunnel.remotePort);
  const second = await heldUser(tunnel.remotePort);
  const third = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.remotePort });
  await writeAll(third, new Uint8Array([1])).catch(() => {});
  assert.equal(
    (await readAll(third).catch(() => new Uint8Array())).length,
    0,
    "a third user was served",
  );
  third.close();
  first.close();
  // Wait (polling the server's own figures) until the first user is counted out.
  const deadline = Date.now() + 5000;
  while (t.server.services()[0]?.connections !== 1 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(t.server.services()[0]?.connections, 1);
  const data = randomBytes(5000);
  assert.equal(await echoThrough(tunnel.remotePort, data), await sha256(data));
  second.close();
});

Deno.test("maxServeSeconds: the tunnel and its users close when the time is up", async () => {
  await using t = await setUp();
  const began = Date.now();
  const tunnel = await t.client.expose({
    name: "brief",
    local: t.app.addr,
    limits: { maxServeSeconds: 0.5 },
  });
  const user = await heldUser(tunnel.remotePort);
  assert.equal(await tunnel.closed, undefined);
  const took = Date.now() - began;
  assert.ok(took >= 450 && took < 3000, `closed after ${took} ms`);
  assert.equal((await readAll(user).catch(() => new Uint8Array())).length, 0);
  user.close();
  assert.ok(await waitRefused(tunnel.remotePort));
});

Deno.test("maxConnections: 1 serves exactly its one user", async () => {
  await using t = await setUp();
  for (let round = 0; round < 5; round++) {
    const tunnel = await t.client.expose({
      name: `once-${round}`,
      local: t.app.addr,
      limits: { maxConnections: 1 },
    });
    const data = randomBytes(3000 + round);
    assert.equal(await echoThrough(tunnel.remotePort, data), await sha256(data), `round ${round}`);
    assert.equal(await tunnel.closed, undefined);
  }
});

Deno.test("bad limits and descriptions are refused locally; the client and its other apps carry on", async () => {
  await using t = await setUp();
  const good = await t.client.expose({ name: "good", local: t.app.addr });
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ limits: { maxUsers: 0 } }, /limits\.maxUsers/],
    [{ limits: { maxConnections: 1.5 } }, /limits\.maxConnections/],
    [{ limits: { maxServeSeconds: 3_000_000 } }, /limits\.maxServeSeconds/],
    [{ limits: { maxServeSeconds: -1 } }, /limits\.maxServeSeconds/],
    [{ limits: { forever: true } }, /limits/],
    [{ description: "x".repeat(1025) }, /description/],
    [{ description: "red \x1b[31malert" }, /control characters/],
  ];
  for (const [extra, message] of bad) {
    await assert.rejects(
      t.client.expose({ name: "bad", local: t.app.addr, ...extra }),
      (err: Error) => err.name === "ConfigError" && message.test(err.message),
    );
  }
  const data = randomBytes(2000);
  assert.equal(await echoThrough(good.remotePort, data), await sha256(data));
  assert.deepEqual(t.server.services().map((s) => s.app), ["good"]);
});

/** Resolves to what `p` resolves to, or to "timeout" after `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"timeout">((resolve) =>
    timer = setTimeout(() => resolve("timeout"), ms)
  );
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** A server and two clients serving one shared group, closed by `await using`. */
async function sharedSetUp() {
  const stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const server = stack.use(await libraryServer({ token: "lim", portCount: 10, tls: false }));
  const options = { token: "lim", group: "pair", shared: true, tls: false } as const;
  const one = stack.use(await libraryClient(server, options));
  const two = stack.use(await libraryClient(server, options));
  return { app, server, one, two, [Symbol.asyncDispose]: () => stack.disposeAsync() };
}

Deno.test("a shared app's maxConnections closes it for every replica: each client hears of it", async () => {
  await using t = await sharedSetUp();
  const limits = { maxConnections: 2 };
  const first = await t.one.expose({ name: "pair", local: t.app.addr, limits });
  const second = await t.two.expose({ name: "pair", local: t.app.addr, limits });
  assert.equal(second.remotePort, first.remotePort);
  for (let i = 0; i < 2; i++) {
    const data = randomBytes(5000 + i);
    assert.equal(await echoThrough(first.remotePort, data), await sha256(data));
  }
  assert.equal(await within(first.closed, 10_000), undefined, "the first replica's tunnel closed");
  assert.equal(
    await within(second.closed, 10_000),
    undefined,
    "the second replica's tunnel closed",
  );
  assert.ok(await waitRefused(first.remotePort));
  assert.deepEqual(t.server.services(), []);
});

Deno.test("a shared app's maxServeSeconds holds after the replica that came first has left", async () => {
  await using t = await sharedSetUp();
  const limits = { maxServeSeconds: 1.5 };
  const first = await t.one.expose({ name: "timed", local: t.app.addr, limits });
  const second = await t.two.expose({ name: "timed", local: t.app.addr, limits });
  await first.close();
  const data = randomBytes(1000);
  assert.equal(await echoThrough(second.remotePort, data), await sha256(data), "still served");
  assert.equal(await within(second.closed, 10_000), undefined, "closed when its time was up");
  assert.ok(await waitRefused(second.remotePort));
});
