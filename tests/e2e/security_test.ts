/**
 * Who may connect: per-group credentials and quotas (`--users`, reloaded on
 * SIGHUP), per-app `allow_from`, failed-login delays and lockout, and the
 * server's global caps, and tokens revoked mid-handshake: real servers and
 * clients moving real bytes (the bookkeeping's unit tests are in
 * `tests/unit/users_test.ts` and `tests/unit/source_guard_test.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  connectFrom,
  echoApp,
  echoThrough,
  groupFile,
  portBlock,
  type Proc,
  randomBytes,
  readAll,
  readyPort,
  sha256,
  startClient,
  startServer,
  waitRefused,
} from "../helpers/harness.ts";
import { makeTempDir } from "../helpers/temp.ts";
import { libraryClient, libraryServer, loginOutcome } from "../helpers/library.ts";
import { startClient as startLibraryClient } from "../../mod.ts";

const SHARED = "shared-token-9f3";
const TEAM_A = "team-a-token-71c";
const CI = "ci-token-4e2";

/** A server with a users file; `extra` is more YAML for the server file. */
async function usersServer(
  users: string | ((block: { from: number }) => string),
  extra = "",
  args: string[] = [],
) {
  const dir = await makeTempDir({ prefix: "burrow-sec-" });
  const block = portBlock();
  const text = typeof users === "string" ? users : users(block);
  await Deno.writeTextFile(`${dir}/users.yaml`, text, { mode: 0o600 });
  await Deno.chmod(`${dir}/users.yaml`, 0o600);
  await Deno.writeTextFile(
    `${dir}/server.yaml`,
    `users: users.yaml\nports: ${block.spec}\n${extra}`,
  );
  const server = await startServer({
    token: SHARED,
    ports: block.spec,
    args: ["--config", `${dir}/server.yaml`, ...args],
  });
  return {
    ...server,
    dir,
    block,
    async [Symbol.asyncDispose]() {
      await server.proc.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function client(
  port: number,
  group: string,
  token: string,
  apps: Array<{ name: string; local: string; remote_port?: number; allow_from?: string[] }>,
): Proc {
  return startClient(groupFile({ server: `127.0.0.1:${port}`, token, group, apps }));
}

Deno.test("per-group tokens: each group proves its own; prefixes match; others use the shared token", async () => {
  const app = echoApp();
  await using server = await usersServer(
    `- group: team-a\n  token: ${TEAM_A}\n- group: "ci-*"\n  token: ${CI}\n`,
  );
  const procs: Proc[] = [];
  try {
    const good = [
      client(server.port, "team-a", TEAM_A, [{ name: "echo", local: app.addr }]),
      client(server.port, "ci-1234", CI, [{ name: "echo", local: app.addr }]),
      client(server.port, "home", SHARED, [{ name: "echo", local: app.addr }]),
    ];
    const bad = [
      client(server.port, "team-b", TEAM_A, [{ name: "echo", local: app.addr }]), // someone else's token
      client(server.port, "team-a", SHARED, [{ name: "echo", local: app.addr }]), // the shared one
      client(server.port, "ci-1", TEAM_A, [{ name: "echo", local: app.addr }]),
    ];
    procs.push(...good, ...bad);
    for (const [i, group] of ["team-a", "ci-1234", "home"].entries()) {
      const port = await readyPort(good[i]!, group, "echo");
      const data = randomBytes(200_000);
      assert.equal(await echoThrough(port, data), await sha256(data));
    }
    for (const p of bad) {
      assert.equal(await p.exitCode(), 3);
      assert.match(p.stderr.text, /authentication failed: wrong token \(auth_failed\)/);
    }
    const everything = [server.proc, ...procs].map((p) => p.stdout.text + p.stderr.text).join("\n");
    for (const secret of [TEAM_A, CI, SHARED]) assert.ok(!everything.includes(secret), secret);
  } finally {
    for (const p of procs) await p.stop();
    app.close();
  }
});

Deno.test("per-group quotas: ports, apps and concurrent connections; refusals name the entry", async () => {
  const held = echoApp();
  // The group's own ports: the first five of the server's block.
  await using server = await usersServer((block) =>
    `- group: team-a\n  token: ${TEAM_A}\n  ports: ${block.from}-${block.from + 4}\n` +
    `  max_apps: 2\n  max_connections: 2\n`
  );
  await using outside = client(server.port, "team-a", TEAM_A, [
    { name: "out", local: held.addr, remote_port: server.block.from + 20 },
  ]);
  assert.equal(await outside.exitCode(), 3);
  assert.match(
    outside.stderr.text,
    /outside the ports this group may claim \(port_not_allowed\)/,
  );
  await using three = client(server.port, "team-a", TEAM_A, [
    { name: "one", local: held.addr },
    { name: "two", local: held.addr },
    { name: "three", local: held.addr },
  ]);
  assert.equal(await three.exitCode(), 3);
  assert.match(three.stderr.text, /may expose at most 2 apps .*users file\) \(quota\)/);
  const two = client(server.port, "team-a", TEAM_A, [
    { name: "one", local: held.addr },
    { name: "two", local: held.addr },
  ]);
  const users: Deno.TcpConn[] = [];
  try {
    const one = await readyPort(two, "team-a", "one");
    const second = await readyPort(two, "team-a", "two");
    for (const p of [one, second]) {
      assert.ok(p >= server.block.from && p <= server.block.from + 4, `port ${p} is the group's`);
    }
    // Two users held open (one per app) fill the group's quota of 2...
    for (const p of [one, second]) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: p });
      await conn.write(new Uint8Array([1]));
      await conn.read(new Uint8Array(1)); // echoed: the join is up
      users.push(conn);
    }
    // ...so a third is closed at once without a byte.
    const third = await Deno.connect({ hostname: "127.0.0.1", port: one });
    await third.write(new Uint8Array([7])).catch(() => 0);
    // Closed without a byte; a served user would get the 7 back and stay open.
    const closedEmpty = await Promise.race([
      readAll(third).then((b) => b.length === 0, () => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5_000)),
    ]);
    third.close();
    assert.ok(closedEmpty, "the third user was served past the group's quota");
    await server.proc.stderr.wait(
      /turned user .* away from team-a\/one: the group has its 2 connections open/,
    );
    // One leaves; the next is served.
    users.shift()!.close();
    const data = randomBytes(50_000);
    let served = false;
    for (let i = 0; i < 50 && !served; i++) { // the server may not have seen the close yet
      served = await echoThrough(one, data).then(
        async (h) => h === await sha256(data),
        () => false,
      );
    }
    assert.ok(served, "a user after one left was served");
  } finally {
    for (const u of users) u.close();
    await two.stop();
    held.close();
  }
});

Deno.test("SIGHUP reloads the users file: a changed token ends that session, a new entry works at once", async () => {
  const app = echoApp();
  await using server = await usersServer(`- group: team-a\n  token: ${TEAM_A}\n`);
  const a = client(server.port, "team-a", TEAM_A, [{ name: "echo", local: app.addr }]);
  const newcomer = "new-token-55d";
  let late: Proc | undefined;
  try {
    const port = await readyPort(a, "team-a", "echo");
    await Deno.writeTextFile(
      `${server.dir}/users.yaml`,
      `- group: team-a\n  token: rotated-token-8e1\n- group: late\n  token: ${newcomer}\n`,
    );
    server.proc.kill("SIGHUP");
    assert.equal(await a.exitCode(), 3);
    assert.match(a.stderr.text, /credentials were revoked \(auth_failed\)/);
    assert.ok(await waitRefused(port, 5_000), "the revoked group's port closed");
    late = client(server.port, "late", newcomer, [{ name: "echo", local: app.addr }]);
    const latePort = await readyPort(late, "late", "echo");
    const data = randomBytes(100_000);
    assert.equal(await echoThrough(latePort, data), await sha256(data));
    // A broken file is reported and the running credentials are kept.
    await Deno.writeTextFile(`${server.dir}/users.yaml`, `- group: late\n  token: [\n`);
    server.proc.kill("SIGHUP");
    await server.proc.stderr.wait(/reload \(SIGHUP\) failed, the users are kept: .*users\.yaml/);
    assert.equal(await echoThrough(latePort, data), await sha256(data));
  } finally {
    await a.stop();
    await late?.stop();
    app.close();
  }
});

Deno.test("a users file others can read is warned about", async () => {
  await using server = await usersServer(`- group: team-a\n  token: ${TEAM_A}\n`);
  await Deno.chmod(`${server.dir}/users.yaml`, 0o644);
  server.proc.kill("SIGHUP");
  await server.proc.stderr.wait(/users file .*users\.yaml can be read by others \(mode 644\)/);
  assert.ok(!server.proc.stderr.text.includes(TEAM_A));
});

Deno.test("discovery with a group's own token sees only that group", async () => {
  using app = echoApp();
  await using server = await usersServer(`- group: team-a\n  token: ${TEAM_A}\n`);
  await using a = client(server.port, "team-a", TEAM_A, [{ name: "echo", local: app.addr }]);
  await using b = client(server.port, "home", SHARED, [{ name: "echo", local: app.addr }]);
  await readyPort(a, "team-a", "echo");
  await readyPort(b, "home", "echo");
  const ask = async (args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        "client.ts",
        "--services",
        "--json",
        "--server",
        `127.0.0.1:${server.port}`,
        ...args,
      ],
      cwd: new URL("../../", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, text: new TextDecoder().decode(out.stdout) };
  };
  const own = await ask(["--group", "team-a", "--token", TEAM_A]);
  assert.equal(own.code, 0);
  assert.deepEqual(JSON.parse(own.text).services.map((s: { group: string }) => s.group), [
    "team-a",
  ]);
  // The shared token sees the groups that use it, not those with their own entry.
  const shared = await ask(["--token", SHARED]);
  assert.deepEqual(
    JSON.parse(shared.text).services.map((s: { group: string }) => s.group),
    ["home"],
  );
  assert.equal((await ask(["--group", "team-a", "--token", SHARED])).code, 3);
});

Deno.test("allow_from: users outside the ranges are turned away before the client sees them", async () => {
  using app = echoApp();
  await using server = await usersServer(`- group: team-a\n  token: ${TEAM_A}\n`);
  await using c = client(server.port, "home", SHARED, [
    { name: "office", local: app.addr, allow_from: ["127.0.0.1/32", "2001:db8::/32"] },
    { name: "open", local: app.addr },
  ]);
  const office = await readyPort(c, "home", "office");
  const open = await readyPort(c, "home", "open");
  const data = randomBytes(100_000);
  assert.equal(await echoThrough(office, data), await sha256(data), "127.0.0.1 is allowed");
  const before = app.accepted;
  // From 127.0.5.5: not in the list. Closed at once; the local app never sees it.
  const outsider = await connectFrom("127.0.5.5", office);
  await server.proc.stderr.wait(
    /turned user 127\.0\.5\.5:\d+ away from home\/office: its address is not in the app's allow_from/,
  );
  outsider.destroy();
  assert.equal(app.accepted, before, "the local app was not dialled");
  // The open app takes the same outsider.
  const other = await connectFrom("127.0.5.5", open);
  other.destroy();
  await server.proc.stderr.wait(/user 127\.0\.5\.5:\d+ on home\/open closed/);
  assert.equal(app.accepted, before + 1);
});

Deno.test("failed logins lock a source out; a locked source is refused even with the right token", async () => {
  const app = echoApp();
  await using server = await usersServer(
    `- group: team-a\n  token: ${TEAM_A}\n`,
    "limits:\n  auth_failures: 3\n  lockout_seconds: 2\n",
  );
  // A live group from this address keeps working through the lockout.
  const live = client(server.port, "home", SHARED, [{ name: "echo", local: app.addr }]);
  const procs: Proc[] = [live];
  try {
    const port = await readyPort(live, "home", "echo");
    for (let i = 0; i < 3; i++) {
      const wrong = client(server.port, "team-a", "wrong-token-x", [{
        name: "echo",
        local: app.addr,
      }]);
      procs.push(wrong);
      assert.equal(await wrong.exitCode(), 3);
    }
    await server.proc.stderr.wait(/locking out 127\.0\.0\.1 for 2s after 3 failed logins/);
    const right = client(server.port, "team-a", TEAM_A, [{ name: "echo", local: app.addr }]);
    procs.push(right);
    assert.equal(await right.exitCode(), 3);
    assert.match(
      right.stderr.text,
      /too many failed logins from 127\.0\.0\.1: locked out for \d+s more \(locked_out\)/,
    );
    // The live group's work connections still come in: users are served.
    const data = randomBytes(300_000);
    for (let i = 0; i < 12; i++) assert.equal(await echoThrough(port, data), await sha256(data));
    // The lockout ends: the right token works again (retried until it does, within 10 s).
    let ok = false;
    const deadline = Date.now() + 10_000;
    while (!ok && Date.now() < deadline) {
      const again = client(server.port, "team-a", TEAM_A, [{ name: "echo", local: app.addr }]);
      procs.push(again);
      ok = await Promise.race([
        readyPort(again, "team-a", "echo").then(() => true, () => false),
        again.exitCode().then(() => false),
      ]);
    }
    assert.ok(ok, "the right token works once the lockout is over");
  } finally {
    for (const p of procs) await p.stop();
    app.close();
  }
});

Deno.test("global caps: groups past limits.max_groups are refused with quota", async () => {
  const app = echoApp();
  await using server = await usersServer(
    `- group: team-a\n  token: ${TEAM_A}\n`,
    "limits:\n  max_groups: 2\n",
  );
  const procs: Proc[] = [];
  try {
    for (const group of ["g-one", "g-two"]) {
      const p = client(server.port, group, SHARED, [{ name: "echo", local: app.addr }]);
      procs.push(p);
      await readyPort(p, group, "echo");
    }
    const third = client(server.port, "g-three", SHARED, [{ name: "echo", local: app.addr }]);
    procs.push(third);
    assert.equal(await third.exitCode(), 3);
    assert.match(third.stderr.text, /limit of 2 groups live \(quota\)/);
    await server.proc.stderr.wait(/2 groups are live \(limits\.max_groups\)/);
  } finally {
    for (const p of procs) await p.stop();
    app.close();
  }
});

Deno.test("a token changed while a client is in its handshake does not give that client a session", async () => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  let entered!: () => void;
  const inHook = new Promise<void>((resolve) => entered = resolve);
  await using server = await libraryServer({
    tls: false,
    users: [{ group: "team", token: "old-token-4kq2" }],
    // Any await between the proof check and the session (here the onAuth hook).
    onAuth: async () => {
      entered();
      await held;
      return true;
    },
  });
  const client = startLibraryClient({
    server: server.dial,
    token: "old-token-4kq2",
    group: "team",
    tls: false,
  });
  client.then((c) => c.close(), () => {});
  await inHook;
  server.setUsers([{ group: "team", token: "new-token-9zx7" }]);
  release();
  await assert.rejects(client, (err: Error & { code?: string }) => err.code === "auth_failed");
  assert.deepEqual(server.groups().filter((g) => g.online).map((g) => g.name), []);
});

Deno.test("max_connections: users admitted together while an onUserConnect hook answers do not exceed the group's quota", async () => {
  // Every user ends up either at the app or closed by the server; count both.
  let reached = 0;
  let closed = 0;
  let settle!: () => void;
  const settled = new Promise<void>((resolve) => settle = resolve);
  const check = () => reached + closed === 3 && settle();
  const appConns: Deno.Conn[] = [];
  const users: Deno.TcpConn[] = [];
  await using stack = new AsyncDisposableStack();
  const local = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of local) {
      appConns.push(conn);
      reached++;
      check();
    }
  })().catch(() => {});
  stack.defer(() => serving); // after the listener below is closed
  stack.use(local);
  let arrived = 0;
  let allArrived!: () => void;
  const three = new Promise<void>((resolve) => allArrived = resolve);
  const server = stack.use(
    await libraryServer({
      tls: false,
      users: [{ group: "quota", token: "quota-token-7hd2", maxConnections: 1 }],
      // An asynchronous hook: every user is asked about before any is counted.
      onUserConnect: async () => {
        if (++arrived === 3) allArrived();
        await three;
        return true;
      },
    }),
  );
  const client = stack.use(
    await libraryClient(server, { token: "quota-token-7hd2", group: "quota", tls: false }),
  );
  stack.defer(() => {
    for (const c of [...users, ...appConns]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  });
  const tunnel = await client.expose({
    name: "app",
    local: `127.0.0.1:${local.addr.port}`,
    remotePort: 0,
  });
  for (let i = 0; i < 3; i++) {
    users.push(await Deno.connect({ hostname: "127.0.0.1", port: tunnel.remotePort }));
  }
  for (const u of users) {
    u.read(new Uint8Array(1)).catch(() => null).finally(() => {
      closed++;
      check();
    });
  }
  await settled;
  assert.equal(reached, 1, "more users reached the app than the group's max_connections");
  assert.equal(closed, 2);
});

Deno.test("lockout: a client that stops right after it connects does not lock its own address out (its pooled work connections arrive after its session ended)", async () => {
  await using server = await libraryServer({
    tls: false,
    users: [{ group: "mine", token: "my-own-token-5sk1" }],
    limits: { authFailures: 5 }, // fewer than the client's pooled work connections (8)
  });
  const codes: string[] = [];
  for (let i = 0; i < 4; i++) {
    codes.push(
      await loginOutcome(startLibraryClient({
        server: server.dial,
        token: "my-own-token-5sk1",
        group: "mine",
        tls: false,
      })),
    );
  }
  assert.deepEqual(codes, ["ok", "ok", "ok", "ok"]);
});

Deno.test("lockout: successful logins with a token one holds do not reset the count of failed guesses at another group's token", async () => {
  await using server = await libraryServer({
    tls: false,
    users: [
      { group: "mine", token: "my-own-token-5sk1" },
      { group: "victim", token: "victims-token-8qm3" },
    ],
    limits: { authFailures: 5 },
  });
  const login = (group: string, token: string) =>
    loginOutcome(startLibraryClient({ server: server.dial, token, group, tls: false }));
  const codes: string[] = [];
  for (let round = 0; round < 3; round++) {
    // Three free guesses, then a login of one's own to wipe the slate.
    for (let i = 0; i < 3; i++) codes.push(await login("victim", `guess-${round}-${i}`));
    codes.push(await login("mine", "my-own-token-5sk1"));
  }
  assert.ok(codes.includes("locked_out"), `never locked out: ${codes.join(" ")}`);
});
