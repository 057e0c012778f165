/**
 * Load-balanced apps end to end, with the real `server.ts` and several
 * `client.ts` processes serving one shared group: one public port for
 * several replicas, users spread evenly, a replica whose local service is
 * down passed over without the user noticing, health checks that take a
 * replica out and bring it back, kill -9 of a replica, all replicas down,
 * `replica_mismatch`, and a shared group meeting a client that does not
 * share it.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  echoThrough,
  groupFile,
  type Proc,
  randomBytes,
  readAll,
  readyPort,
  sha256,
  startClient,
  startServer,
  until,
  waitRefused,
  writeAll,
} from "../helpers/harness.ts";
import type { AppSpec } from "../helpers/harness.ts";
import { libraryClient, libraryServer } from "../helpers/library.ts";
import { RefusedError } from "../../mod.ts";

const TOKEN = "replica-token";
const GROUP = "web-farm";

/**
 * An echo service that can be stopped and started again on the same port
 * (a local service going away and coming back), counting the connections
 * that sent it bytes (`accepted`: users, not health probes).
 */
class Service implements Disposable {
  readonly port: number;
  accepted = 0;
  #listener: Deno.TcpListener | undefined;
  #conns = new Set<Deno.TcpConn>();

  constructor() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = listener.addr.port;
    this.#serve(listener);
  }

  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  start(): void {
    if (!this.#listener) this.#serve(Deno.listen({ hostname: "127.0.0.1", port: this.port }));
  }

  /** Stops listening (new connections are refused); `dropUsers` also ends the open ones. */
  stop(dropUsers = false): void {
    try {
      this.#listener?.close();
    } catch { /* closed */ }
    this.#listener = undefined;
    if (dropUsers) { for (const c of this.#conns) c.close(); }
  }

  [Symbol.dispose](): void {
    this.stop(true);
  }

  async #serve(listener: Deno.TcpListener): Promise<void> {
    this.#listener = listener;
    try {
      for await (const conn of listener) {
        this.#conns.add(conn);
        this.#echo(conn).catch(() => {}).finally(() => {
          this.#conns.delete(conn);
          try {
            conn.close();
          } catch { /* closed */ }
        });
      }
    } catch { /* closed */ }
  }

  async #echo(conn: Deno.TcpConn): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    let first = true;
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      if (first) this.accepted++;
      first = false;
      await writeAll(conn, buf.subarray(0, n));
    }
    await conn.closeWrite();
  }
}

/** A shared group file for one replica of app `web` in front of `service`. */
function replicaFile(server: number, service: Service, app: Partial<AppSpec> = {}): string {
  return groupFile({
    server: `127.0.0.1:${server}`,
    token: TOKEN,
    group: GROUP,
    shared: true,
    heartbeat_interval: 1,
    apps: [{ name: "web", local: service.addr, ...app }],
  });
}

/** Starts one replica and waits for its `ready` line; returns its process and public port. */
async function replica(
  server: number,
  service: Service,
  app: Partial<AppSpec> = {},
): Promise<{ proc: Proc; port: number }> {
  const proc = startClient(replicaFile(server, service, app));
  try {
    return { proc, port: await readyPort(proc, GROUP, "web") };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** Sends `size` random bytes through `port` and checks the echo is exact. */
async function assertExact(port: number, size = 64 * 1024): Promise<void> {
  const data = randomBytes(size);
  assert.equal(await echoThrough(port, data), await sha256(data), "the echo differs");
}

/** The server's last log lines, for the assertion messages. */
function tail(proc: Proc): string {
  return proc.stderr.all.slice(-15).join("\n");
}

Deno.test("three replicas share one public port and get users in turn; each leaving removes only itself", async () => {
  await using server = await startServer({ token: TOKEN });
  using a = new Service();
  using b = new Service();
  using c = new Service();
  const ra = await replica(server.port, a);
  const rb = await replica(server.port, b);
  const rc = await replica(server.port, c);
  try {
    assert.equal(rb.port, ra.port, "every replica gets the app's one port");
    assert.equal(rc.port, ra.port);
    await server.proc.stderr.wait(/web-farm\/web: replica .* joined \(3 replicas\)/);
    for (let i = 0; i < 30; i++) await assertExact(ra.port, 16 * 1024 + i);
    assert.deepEqual([a.accepted, b.accepted, c.accepted], [10, 10, 10], tail(server.proc));
    // One replica stops: the port stays, the others share its users.
    await rb.proc.stop();
    await server.proc.stderr.wait(/web-farm\/web: replica .* left \(2 left\)/);
    for (let i = 0; i < 10; i++) await assertExact(ra.port);
    assert.equal(b.accepted, 10, "a replica that left gets no users");
    assert.equal(a.accepted + c.accepted, 30);
    assert.deepEqual([a.accepted, c.accepted], [15, 15], "the two left take turns");
    await ra.proc.stop();
    await server.proc.stderr.wait(/web-farm\/web: replica .* left \(1 left\)/);
    for (let i = 0; i < 3; i++) await assertExact(ra.port);
    assert.deepEqual([a.accepted, c.accepted], [15, 18]);
    // The last replica goes: the port closes.
    await rc.proc.stop();
    assert.ok(await waitRefused(ra.port), "the port closes with the last replica");
  } finally {
    await Promise.all([ra.proc.stop(), rb.proc.stop(), rc.proc.stop()]);
  }
});

Deno.test("a replica whose local service is down costs its users nothing: each is retried on another", async () => {
  await using server = await startServer({ token: TOKEN });
  using a = new Service();
  using b = new Service();
  using c = new Service();
  const reps = [
    await replica(server.port, a),
    await replica(server.port, b),
    await replica(server.port, c),
  ];
  try {
    const port = reps[0]!.port;
    b.stop();
    assert.ok(await waitRefused(b.port), "the stopped service refuses connections");
    // Large payloads, sent before the client could answer: nothing may be lost on the way.
    await Promise.all(Array.from({ length: 24 }, (_, i) => assertExact(port, 200 * 1024 + i)));
    assert.equal(b.accepted, 0);
    assert.equal(a.accepted + c.accepted, 24);
    assert.ok(a.accepted >= 6, `the other replicas share the load: ${a.accepted}`);
    assert.ok(c.accepted >= 6, `${c.accepted}`);
    assert.match(server.proc.stderr.text, /replica .* cannot take it \(client could not reach/);
  } finally {
    await Promise.all(reps.map((r) => r.proc.stop()));
  }
});

Deno.test("health checks take a failing replica out and bring it back (flapping), with events and metrics", async () => {
  await using server = await startServer({
    token: TOKEN,
    args: ["--dashboard", "127.0.0.1:0", "--dashboard-password", "pw-for-tests"],
  });
  const m = await server.proc.stdout.wait(/^dashboard http:\/\/127\.0\.0\.1:(\d+)\/$/);
  const api = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${m[1]}${path}`, {
      headers: { authorization: `Basic ${btoa("admin:pw-for-tests")}` },
    });
    assert.equal(res.status, 200, path);
    return path === "/metrics" ? await res.text() : await res.json();
  };
  using a = new Service();
  using b = new Service();
  const health = { tcp: true as const, interval: 0.2, fails: 2 };
  const ra = await replica(server.port, a, { health });
  const rb = await replica(server.port, b, { health });
  try {
    const port = ra.port;
    for (let round = 0; round < 2; round++) {
      const from = server.proc.stderr.count;
      const fromClient = ra.proc.stderr.count;
      a.stop();
      await server.proc.stderr.wait(
        /web-farm\/web: replica .* is unhealthy: cannot reach/,
        15_000,
        from,
      );
      await ra.proc.stderr.wait(/web-farm\/web: unhealthy: cannot reach/, 15_000, fromClient);
      const before = a.accepted;
      for (let i = 0; i < 8; i++) await assertExact(port);
      assert.equal(a.accepted, before, "an unhealthy replica gets no users");
      assert.ok(
        !server.proc.stderr.all.slice(from).join("\n").includes("cannot take it"),
        `no user was even tried on it:\n${server.proc.stderr.all.slice(from).join("\n")}`,
      );
      const { groups } = await api("/api/groups");
      const web = groups[0].apps.find((x: { name: string }) => x.name === "web");
      assert.equal(web.replicas.length, 2);
      assert.deepEqual(web.replicas.map((r: { healthy: boolean }) => r.healthy).sort(), [
        false,
        true,
      ]);
      assert.match(await api("/metrics"), /burrow_replica_healthy\{[^}]*\} 0/);
      a.start();
      await server.proc.stderr.wait(/web-farm\/web: replica .* is healthy again/, 15_000, from);
      for (let i = 0; i < 8; i++) await assertExact(port);
      assert.equal(a.accepted, before + 4, "back in turn once healthy");
    }
    const { events } = await api("/api/events");
    const kinds = events.map((e: { kind: string }) => e.kind);
    assert.ok(kinds.includes("health"), kinds.join());
    assert.ok(kinds.includes("replica"), kinds.join());
    assert.doesNotMatch(await api("/metrics"), /burrow_replica_healthy\{[^}]*\} 0/);
  } finally {
    await Promise.all([ra.proc.stop(), rb.proc.stop()]);
  }
});

Deno.test("kill -9 of a replica: its users fail, new users go to the others", async () => {
  await using server = await startServer({ token: TOKEN, heartbeatTimeout: 3 });
  using a = new Service();
  using b = new Service();
  const ra = await replica(server.port, a);
  const rb = await replica(server.port, b);
  try {
    const port = ra.port;
    // The first user goes to the first replica (round robin); it stays connected.
    const held = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(held, new TextEncoder().encode("hello"));
    const echoed = new Uint8Array(5);
    let got = 0;
    while (got < 5) got += (await held.read(echoed.subarray(got))) ?? 5;
    assert.equal(a.accepted, 1);
    ra.proc.kill("SIGKILL");
    await ra.proc.exitCode();
    // The killed replica's user ends (the tunnel under it is gone).
    const rest = await readAll(held).catch(() => new Uint8Array());
    assert.equal(rest.length, 0);
    held.close();
    await server.proc.stderr.wait(/web-farm\/web: replica .* left \(1 left\)/, 15_000);
    for (let i = 0; i < 6; i++) await assertExact(port);
    assert.equal(b.accepted, 6);
  } finally {
    await Promise.all([ra.proc.stop(), rb.proc.stop()]);
  }
});

Deno.test("all replicas down: a user is closed at once, with nothing sent", async () => {
  await using server = await startServer({ token: TOKEN });
  using a = new Service();
  using b = new Service();
  const ra = await replica(server.port, a);
  const rb = await replica(server.port, b, { health: { tcp: true, interval: 0.2, fails: 1 } });
  try {
    a.stop();
    b.stop();
    assert.ok(await waitRefused(a.port) && await waitRefused(b.port), "both services are down");
    await server.proc.stderr.wait(/replica .* is unhealthy/, 15_000);
    // One replica's service refuses, the other is unhealthy: nobody can take the user.
    const started = Date.now();
    const user = await Deno.connect({ hostname: "127.0.0.1", port: ra.port });
    await writeAll(user, new TextEncoder().encode("anyone there?")).catch(() => {});
    const got = await readAll(user).catch(() => new Uint8Array());
    user.close();
    assert.equal(got.length, 0);
    assert.ok(Date.now() - started < 5_000, "closed at once, not after the 10 s work timeout");
    assert.match(server.proc.stderr.text, /closed: .*(no healthy replica|could not reach)/);
  } finally {
    await Promise.all([ra.proc.stop(), rb.proc.stop()]);
  }
});

Deno.test("replicas must agree on remote_port (replica_mismatch, exit 3); a non-shared client is told why", async () => {
  await using server = await startServer({ token: TOKEN });
  using a = new Service();
  const ra = await replica(server.port, a);
  try {
    const mismatched = startClient(replicaFile(server.port, a, { remote_port: ra.port }));
    try {
      assert.equal(await mismatched.exitCode(20_000), 3);
      assert.match(mismatched.stderr.text, /same type and remote_port \(replica_mismatch\)/);
    } finally {
      await mismatched.stop();
    }
    const lone = startClient(groupFile({
      server: `127.0.0.1:${server.port}`,
      token: TOKEN,
      group: GROUP,
      apps: [{ name: "web", local: a.addr }],
    }));
    try {
      assert.equal(await lone.exitCode(20_000), 3);
      assert.match(lone.stderr.text, /does not share it: set shared: true .*\(group_live\)/);
    } finally {
      await lone.stop();
    }
    // The refused ones left the live replica alone.
    await assertExact(ra.port);
  } finally {
    await ra.proc.stop();
  }
});

Deno.test("a shared client cannot join a group a non-shared client holds", async () => {
  await using server = await startServer({ token: TOKEN });
  using a = new Service();
  const lone = startClient(groupFile({
    server: `127.0.0.1:${server.port}`,
    token: TOKEN,
    group: GROUP,
    apps: [{ name: "web", local: a.addr }],
  }));
  try {
    const port = await readyPort(lone, GROUP, "web");
    const shared = startClient(replicaFile(server.port, a));
    try {
      assert.equal(await shared.exitCode(20_000), 3);
      assert.match(shared.stderr.text, /a client that does not share it/);
    } finally {
      await shared.stop();
    }
    assert.equal(a.accepted, 0, "the refused client served nobody");
    await assertExact(port);
  } finally {
    await lone.stop();
  }
});

Deno.test("library: startClient({ shared: true }), health on expose, and RefusedError replica_mismatch", async () => {
  await using server = await libraryServer({ token: TOKEN, tls: false });
  using a = new Service();
  using b = new Service();
  const options = { token: TOKEN, group: GROUP, shared: true, tls: false } as const;
  await using one = await libraryClient(server, options);
  await using two = await libraryClient(server, options);
  const health = { tcp: true, interval: 0.2, fails: 1 } as const;
  const t1 = await one.expose({ name: "web", local: a.addr, balance: "least_conn", health });
  const t2 = await two.expose({ name: "web", local: b.addr, health });
  assert.equal(t2.remotePort, t1.remotePort);
  assert.equal(server.services().length, 1, "one app, however many replicas");
  await using three = await libraryClient(server, options);
  await assert.rejects(
    three.expose({ name: "web", local: b.addr, remotePort: t1.remotePort }),
    (err: Error & { code?: string }) =>
      err instanceof RefusedError && err.code === "replica_mismatch",
  );
  const web = server.groups()[0]?.apps.find((x) => x.name === "web");
  assert.equal(web?.replicas?.length, 2);
  await assert.rejects(
    one.expose({ name: "bad", local: a.addr, health: { tcp: true, http: "/x" } }),
    /exactly one of tcp: true and http/,
  );
  // Health off on one replica: every user goes to the other, byte-exact.
  a.stop();
  await until(
    () => server.groups()[0]?.apps.find((x) => x.name === "web")?.replicas ?? [],
    (rs) => rs.some((r) => !r.healthy),
  );
  for (let i = 0; i < 4; i++) await assertExact(t1.remotePort);
  assert.equal(b.accepted, 4);
  await t2.close();
  await assertExact(t1.remotePort).then(
    () => assert.fail("the only replica left is unhealthy"),
    () => {},
  );
});
