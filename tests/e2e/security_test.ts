/**
 * Who may connect: per-group credentials and quotas (`--users`, reloaded on
 * SIGHUP), per-app `allow_from`, failed-login delays and lockout, and the
 * server's global caps. Unit tests of the bookkeeping first, then real
 * servers and clients moving real bytes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Credentials, loadUsersFile } from "../../lib/server/users.ts";
import { DEFAULT_LIMITS } from "../../lib/config/limits.ts";
import { SourceGuard, sourceOf } from "../../lib/util/source_guard.ts";
import { ConfigError } from "../../lib/util/errors.ts";
import { Secret } from "../../lib/util/secret.ts";
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

const SHARED = "shared-token-9f3";
const TEAM_A = "team-a-token-71c";
const CI = "ci-token-4e2";

Deno.test("credentials: an exact name beats a prefix, the longest prefix wins, else the shared token", () => {
  const creds = new Credentials([
    { group: "ci-*", token: "ci", maxApps: 1 },
    { group: "ci-prod-*", token: "ci-prod" },
    { group: "ci-prod-7", token: "seven", ports: "6000-6010", maxConnections: 3 },
  ], new Secret("shared"));
  assert.equal(creds.lookup("ci-prod-7")?.token.reveal(), "seven");
  assert.deepEqual(creds.lookup("ci-prod-7")?.quota?.ports, [{ from: 6000, to: 6010 }]);
  assert.equal(creds.lookup("ci-prod-7")?.quota?.maxConnections, 3);
  assert.equal(creds.lookup("ci-prod-8")?.token.reveal(), "ci-prod");
  assert.equal(creds.lookup("ci-x")?.quota?.maxApps, 1);
  assert.equal(creds.lookup("home")?.token.reveal(), "shared");
  assert.equal(creds.lookup("home")?.quota, undefined);
  assert.equal(new Credentials([{ group: "a", token: "t" }]).lookup("b"), undefined);
  assert.throws(
    () => new Credentials([{ group: "a", token: "x" }, { group: "a", token: "y" }]),
    /users\[1\]\.group: "a" is listed twice/,
  );
  assert.throws(() => new Credentials([{ group: "Bad!", token: "x" }]), ConfigError);
});

Deno.test("users file: errors name the file, key and line, and never quote a token", async () => {
  const dir = await Deno.makeTempDir({ prefix: "burrow-users-" });
  try {
    const cases: Array<[string, RegExp]> = [
      [`- group: a\n  token: tok-secret-1\n  ports: 9-8\n`, /users\.yaml: \[0\]\.ports \(line 3\)/],
      [
        `- group: a\n  token: tok-secret-1\n- group: a\n  token: tok-secret-2\n`,
        /\[1\]\.group \(line 3\): "a" is listed twice/,
      ],
      [`- group: a\n  token: tok-secret-1\n  max_apps: -1\n`, /\[0\]\.max_apps \(line 3\)/],
      [`- group: a\n  token: tok-secret-1\n  tokn: x\n`, /\[0\]\.tokn \(line 3\): unknown key/],
      [`group: a\n`, /must be a list of groups/],
    ];
    for (const [text, expected] of cases) {
      await Deno.writeTextFile(`${dir}/users.yaml`, text);
      const err = await loadUsersFile(`${dir}/users.yaml`, () => undefined).then(
        () => assert.fail(`accepted:\n${text}`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, expected);
      assert.ok(!err.message.includes("tok-secret"), err.message);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("source guard: free failures, then growing delays, then a lockout that ends", () => {
  let now = 1_000_000;
  const guard = new SourceGuard(
    { ...DEFAULT_LIMITS, authFailures: 7, lockoutSeconds: 60 },
    () => now,
  );
  const delays = Array.from({ length: 6 }, () => guard.failed("198.51.100.7").delayMs);
  assert.deepEqual(delays, [0, 0, 0, 250, 500, 1000]);
  assert.equal(guard.lockedFor("198.51.100.7"), 0);
  assert.deepEqual(guard.failed("198.51.100.7"), { delayMs: 0, lockedOut: true });
  assert.equal(guard.lockedFor("198.51.100.7"), 60);
  assert.equal(guard.lockedFor("198.51.100.8"), 0, "another source is not locked");
  assert.equal(guard.lockedFor("198.51.100.7"), 60);
  now += 60_001;
  assert.equal(guard.lockedFor("198.51.100.7"), 0);
  assert.deepEqual(guard.failed("198.51.100.7"), { delayMs: 0, lockedOut: false }, "counted anew");
  // Delays are capped at 5 s.
  const slow = new SourceGuard({ ...DEFAULT_LIMITS, authFailures: 100 }, () => now);
  let last = 0;
  for (let i = 0; i < 20; i++) last = slow.failed("192.0.2.1").delayMs;
  assert.equal(last, 5000);
});

Deno.test("source guard: handshakes per source, IPv6 counted by /64, and a bounded memory", () => {
  const guard = new SourceGuard({ ...DEFAULT_LIMITS, handshakesPerSource: 2 });
  const a = sourceOf("2001:db8:1:2:aaaa::1");
  assert.equal(a, sourceOf("2001:db8:1:2:bbbb::9"), "one /64, one source");
  assert.notEqual(a, sourceOf("2001:db8:1:3::1"));
  assert.equal(sourceOf("::ffff:192.0.2.4"), "192.0.2.4");
  assert.ok(guard.enter(a) && guard.enter(a));
  assert.equal(guard.enter(a), false);
  guard.leave(a);
  assert.ok(guard.enter(a));
  for (let i = 0; i < 12_000; i++) guard.failed(`10.${i >> 16 & 255}.${i >> 8 & 255}.${i & 255}`);
  assert.ok(guard.tracked <= 10_000, `tracks ${guard.tracked} sources`);
});

/** A server with a users file; `extra` is more YAML for the server file. */
async function usersServer(
  users: string | ((block: { from: number }) => string),
  extra = "",
  args: string[] = [],
) {
  const dir = await Deno.makeTempDir({ prefix: "burrow-sec-" });
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
  const outside = client(server.port, "team-a", TEAM_A, [
    { name: "out", local: held.addr, remote_port: server.block.from + 20 },
  ]);
  try {
    assert.equal(await outside.exitCode(), 3);
    assert.match(
      outside.stderr.text,
      /outside the ports this group may claim \(port_not_allowed\)/,
    );
  } finally {
    await outside.stop();
  }
  const three = client(server.port, "team-a", TEAM_A, [
    { name: "one", local: held.addr },
    { name: "two", local: held.addr },
    { name: "three", local: held.addr },
  ]);
  try {
    assert.equal(await three.exitCode(), 3);
    assert.match(three.stderr.text, /may expose at most 2 apps .*users file\) \(quota\)/);
  } finally {
    await three.stop();
  }
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
  const app = echoApp();
  await using server = await usersServer(`- group: team-a\n  token: ${TEAM_A}\n`);
  const a = client(server.port, "team-a", TEAM_A, [{ name: "echo", local: app.addr }]);
  const b = client(server.port, "home", SHARED, [{ name: "echo", local: app.addr }]);
  try {
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
  } finally {
    await a.stop();
    await b.stop();
    app.close();
  }
});

Deno.test("allow_from: users outside the ranges are turned away before the client sees them", async () => {
  const app = echoApp();
  await using server = await usersServer(`- group: team-a\n  token: ${TEAM_A}\n`);
  const c = client(server.port, "home", SHARED, [
    { name: "office", local: app.addr, allow_from: ["127.0.0.1/32", "2001:db8::/32"] },
    { name: "open", local: app.addr },
  ]);
  try {
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
  } finally {
    await c.stop();
    app.close();
  }
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

Deno.test("the example files load as written", async () => {
  const { loadClientConfig } = await import("../../lib/config/group_file.ts");
  const { loadServerConfig } = await import("../../lib/config/server_file.ts");
  const env = (name: string) =>
    ({ BURROW_TOKEN: "t", BURROW_TOKEN_HOME: "h", BURROW_TOKEN_CI: "c" })[name];
  const group = await loadClientConfig("examples/group.yaml", {}, env);
  assert.deepEqual(group.apps.find((a) => a.name === "db")?.allowFrom, [
    "203.0.113.0/24",
    "2001:db8::/32",
  ]);
  const server = await loadServerConfig({ config: "examples/server.yaml" }, env);
  assert.equal(server.limits.authFailures, DEFAULT_LIMITS.authFailures);
  const users = await loadUsersFile("examples/users.yaml", env);
  assert.deepEqual(users.map((u) => u.group), ["home-lab", "ci-*"]);
});
