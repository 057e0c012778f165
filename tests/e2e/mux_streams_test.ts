/**
 * Users as streams over a client's few work connections (protocol v5): many
 * at once arrive byte-exact, a user who does not read does not stall the
 * others on the same connection, and a work connection that dies fails only
 * the users it carried and is replaced.
 *
 * @module
 */

import assert from "node:assert/strict";
import { echoApp, localApp } from "../helpers/apps.ts";
import { asTestClient, libraryClient, libraryServer } from "../helpers/library.ts";
import { startClient } from "../../mod.ts";
import { echoThrough, pump, randomBytes, sha256, writeAll } from "../helpers/net.ts";
import { FreezableProxy } from "../helpers/relays.ts";

const TOKEN = "mux-streams-token-5k2p";

/** A TCP relay to `target` that can cut one of its connections (by the order they came in). */
class CuttableRelay implements AsyncDisposable {
  readonly port: number;
  #listener: Deno.TcpListener;
  #pairs: Array<[Deno.TcpConn, Deno.TcpConn]> = [];
  #tasks = new Set<Promise<void>>();

  constructor(target: number) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#listener = listener;
    this.port = listener.addr.port;
    this.#track((async () => {
      for await (const inbound of listener) {
        const outbound = await Deno.connect({ hostname: "127.0.0.1", port: target });
        this.#pairs.push([inbound, outbound]);
        this.#track(pump(inbound, outbound));
        this.#track(pump(outbound, inbound));
      }
    })());
  }

  /** Connections relayed so far. */
  get count(): number {
    return this.#pairs.length;
  }

  /** Cuts connection `index` (both sides, at once). */
  cut(index: number): void {
    for (const c of this.#pairs[index] ?? []) quietClose(c);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    quietClose(this.#listener);
    for (const pair of this.#pairs) pair.forEach(quietClose);
    await Promise.all(this.#tasks);
  }

  #track(task: Promise<void>): void {
    const t = task.catch(() => {}).finally(() => this.#tasks.delete(t));
    this.#tasks.add(t);
  }
}

function quietClose(c: { close(): void }): void {
  try {
    c.close();
  } catch { /* closed */ }
}

/** Resolves once `predicate` holds (polled), or throws after `timeoutMs`. */
async function until(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One echo round trip on a held connection; true if the bytes came back. */
async function roundTrip(conn: Deno.TcpConn, data: Uint8Array): Promise<boolean> {
  try {
    await writeAll(conn, data);
    const back = new Uint8Array(data.length);
    let got = 0;
    while (got < back.length) {
      const n = await conn.read(back.subarray(got));
      if (n === null) return false;
      got += n;
    }
    return back.every((b, i) => b === data[i]);
  } catch {
    return false;
  }
}

Deno.test("1000 concurrent users through one tunnel arrive byte-exact (SHA-256)", async () => {
  using app = echoApp();
  await using server = await libraryServer({ token: TOKEN });
  await using client = await libraryClient(server, { token: TOKEN, group: "many" });
  const tunnel = await client.expose({ name: "echo", local: app.addr });
  const jobs = Array.from({ length: 1000 }, async (_, i) => {
    const data = randomBytes(2000 + (i % 50) * 331);
    const [back, sent] = await Promise.all([echoThrough(tunnel.remotePort, data), sha256(data)]);
    return back === sent;
  });
  const results = await Promise.all(jobs);
  assert.equal(results.filter((ok) => ok).length, 1000);
  assert.equal(app.accepted, 1000, "every user reached the app once");
});

Deno.test("a user who never reads does not stall other users on the same work connection", async () => {
  // The firehose writes until its user stops reading; then its stream's window is full.
  let firehoseBytes = 0;
  using firehose = localApp(async (conn) => {
    const chunk = new Uint8Array(64 * 1024);
    while (true) {
      await conn.write(chunk);
      firehoseBytes += chunk.length;
    }
  });
  using echo = echoApp();
  await using server = await libraryServer({ token: TOKEN });
  // One work connection: both users' streams share it.
  await using client = await libraryClient(server, { token: TOKEN, group: "slow", poolSize: 1 });
  const hose = await client.expose({ name: "hose", local: firehose.addr });
  const tunnel = await client.expose({ name: "echo", local: echo.addr });
  using _stuck = await Deno.connect({ hostname: "127.0.0.1", port: hose.remotePort });
  await until(() => firehoseBytes > 8 * 1024 * 1024, "the firehose to fill the stuck user's path");
  const started = performance.now();
  for (let i = 0; i < 5; i++) {
    const data = randomBytes(1024 * 1024);
    assert.equal(await echoThrough(tunnel.remotePort, data), await sha256(data));
  }
  const seconds = (performance.now() - started) / 1000;
  assert.ok(seconds < 20, `5 MiB of echo took ${seconds}s beside a stuck user`);
  // Flow control bounds what the stuck user's stream buffers: the firehose is held back. (The
  // kernel may still grow the stuck socket's receive buffer for a while, so wait for it to settle.)
  let held = firehoseBytes;
  const deadline = Date.now() + 20_000;
  for (let grew = Infinity; grew >= 1024 * 1024;) {
    assert.ok(Date.now() < deadline, `the firehose kept writing (${grew} bytes in 500 ms)`);
    const before = firehoseBytes;
    await new Promise((r) => setTimeout(r, 500));
    held = firehoseBytes;
    grew = held - before;
  }
  assert.ok(held < 80 * 1024 * 1024, `${held} bytes buffered for a user who reads nothing`);
});

Deno.test("a work connection that dies fails only its own users and is replaced", async () => {
  using app = echoApp();
  await using server = await libraryServer({ token: TOKEN, tls: false });
  await using relay = new CuttableRelay(server.addr.port);
  await using client = asTestClient(
    await startClient({
      server: `127.0.0.1:${relay.port}`,
      token: TOKEN,
      group: "cut",
      tls: false,
    }),
  );
  // Connection 0 is the control connection, 1 and 2 the work connections.
  await until(() => relay.count >= 3, "two work connections");
  const tunnel = await client.expose({ name: "echo", local: app.addr });
  const users: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 10; i++) {
      const user = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.remotePort });
      users.push(user);
      assert.ok(await roundTrip(user, randomBytes(1000)), `user ${i} did not echo`);
    }
    relay.cut(1);
    const after = await Promise.all(users.map((u) => roundTrip(u, randomBytes(1000))));
    const alive = after.filter((ok) => ok).length;
    // Streams spread over both connections (the least loaded takes the next one).
    assert.ok(alive >= 3 && alive <= 7, `${alive} of 10 users survived one of two connections`);
    await until(() => relay.count >= 4, "a new work connection");
    const data = randomBytes(300 * 1024);
    assert.equal(await echoThrough(tunnel.remotePort, data), await sha256(data));
  } finally {
    users.forEach(quietClose);
  }
});

Deno.test("an app is ready only once a work connection can serve its first user (bounded wait)", async () => {
  using app = echoApp();
  await using server = await libraryServer({ token: TOKEN, tls: false });
  // Connection 0 is the control connection; work connections are turned away until `open`.
  let open = false;
  await using relay = new FreezableProxy(server.addr.port, (index) => index === 0 || open);
  await using client = asTestClient(
    await startClient({
      server: `127.0.0.1:${relay.port}`,
      token: TOKEN,
      group: "late",
      tls: false,
    }),
  );
  const began = performance.now();
  const opener = setTimeout(() => open = true, 1_000);
  try {
    const tunnel = await client.expose({ name: "echo", local: app.addr });
    const waited = performance.now() - began;
    assert.ok(waited >= 950, `ready after ${waited.toFixed(0)} ms, before any work connection`);
    // Ready means served: the first user needs no dial of its own.
    const data = randomBytes(64 * 1024);
    assert.equal(await echoThrough(tunnel.remotePort, data), await sha256(data));
  } finally {
    clearTimeout(opener);
  }
  // With no work connection at all, `ready` still comes, after the bounded wait.
  const lonely = new FreezableProxy(server.addr.port, (index) => index === 0);
  await using _lonely = lonely;
  await using other = asTestClient(
    await startClient({
      server: `127.0.0.1:${lonely.port}`,
      token: TOKEN,
      group: "lonely",
      tls: false,
    }),
  );
  const t0 = performance.now();
  await other.expose({ name: "echo", local: app.addr });
  const late = performance.now() - t0;
  assert.ok(
    late >= 2_900 && late < 10_000,
    `ready after ${late.toFixed(0)} ms without work connections`,
  );
});
