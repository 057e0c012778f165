/**
 * The dashboard's JSON API and `/metrics` against a live server carrying
 * real traffic, basic auth, the security headers, and the server program's
 * `--dashboard` flags (the `dashboard` line, exit 2 off loopback without a
 * password). Figures are awaited by polling the API with a deadline.
 */

import assert from "node:assert/strict";
import { type GroupStatus, type ServerStatus, startClient, startServer } from "../../mod.ts";
import { libraryServer } from "../helpers/library.ts";
import {
  echoApp,
  echoThrough,
  portBlock,
  Proc,
  randomBytes,
  sha256,
  startServer as startServerProc,
  until,
} from "../helpers/harness.ts";
import { parseNpm, parseReference, referencePython } from "../helpers/prom_parse.ts";

const PASSWORD = "dash-pass-5c1e";

function basic(user: string, password: string): string {
  return `Basic ${btoa(`${user}:${password}`)}`;
}

Deno.test("dashboard API and metrics follow a live tunnel: groups, bytes, events, offline", async () => {
  const app = echoApp();
  const ports = portBlock();
  const server = await startServer({
    bind: "127.0.0.1:0",
    token: "dash-token",
    ports: ports.spec,
    publicHost: "127.0.0.1",
    dashboard: { bind: "127.0.0.1:0", user: "ops", password: PASSWORD },
  });
  const base = `http://127.0.0.1:${server.dashboardAddr?.port}`;
  const auth = { authorization: basic("ops", PASSWORD) };
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(base + path, { headers: auth });
    assert.equal(res.status, 200, path);
    return await res.json();
  };
  const groups = () => api<{ groups: GroupStatus[] }>("/api/groups").then((r) => r.groups);
  let client = await startClient({
    server: `127.0.0.1:${server.addr.port}`,
    token: "dash-token",
    group: "lab",
  });
  try {
    const tunnel = await client.expose({
      name: "echo",
      local: app.addr,
      description: "<script>x</script>",
    });
    // Real bytes, checked exactly, then seen by the API to the byte.
    const data = randomBytes(300_000);
    assert.equal(await echoThrough(tunnel.remotePort, data), await sha256(data));
    const [lab] = await until(groups, (g) => g[0]?.apps[0]?.bytesOut === 300_000, 10_000);
    assert.equal(lab?.name, "lab");
    assert.equal(lab?.online, true);
    assert.match(lab?.clientAddr ?? "", /^127\.0\.0\.1:\d+$/);
    assert.equal(lab?.clientVersion, "0.1.0");
    assert.ok(Date.parse(lab?.connectedSince ?? "") <= Date.now());
    const echo = lab?.apps[0];
    assert.equal(echo?.name, "echo");
    assert.equal(echo?.port, tunnel.remotePort);
    assert.equal(echo?.description, "<script>x</script>");
    assert.equal(echo?.bytesIn, 300_000);
    assert.equal(echo?.connectionsTotal, 1);
    assert.equal(echo?.connections, 0);
    assert.ok(echo?.lastActivity !== null && Date.parse(echo?.lastActivity ?? "") > 0);

    // A live connection counts as live, and its bytes show before it ends.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.remotePort });
    try {
      await conn.write(new Uint8Array(1000));
      const got = new Uint8Array(1000);
      let read = 0;
      while (read < 1000) read += (await conn.read(got.subarray(read))) ?? 0;
      const live = await until(groups, (g) => g[0]?.apps[0]?.bytesIn === 301_000, 10_000);
      assert.equal(live[0]?.apps[0]?.connections, 1);
      const status = await api<ServerStatus>("/api/status");
      assert.equal(status.version, "0.1.0");
      assert.ok(status.uptimeSeconds >= 0);
      assert.deepEqual(
        [status.totals.groupsOnline, status.totals.appsOnline, status.totals.connections],
        [1, 1, 1],
      );
      assert.equal(status.totals.connectionsTotal, 2);
      assert.equal(status.totals.bytesOut, 301_000);
    } finally {
      conn.close();
    }
    // The sparkline series fills once a second.
    const sampled = await until(
      groups,
      (g) => (g[0]?.apps[0]?.traffic.in.length ?? 0) >= 2,
      10_000,
    );
    assert.ok(sampled[0]?.apps[0]?.traffic.in.every((n) => Number.isInteger(n) && n >= 0));

    // Metrics: parsed by real parsers, with the same figures.
    const res = await fetch(`${base}/metrics`, { headers: auth });
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    const npm = parseNpm(text);
    assert.ok(npm.some((f) => f.name === "burrow_app_bytes_total" && f.type === "COUNTER"));
    if (referencePython.path) {
      const families = await parseReference(text, "text");
      const value = (name: string, labels: Record<string, string>) =>
        families.flatMap((f) => f.samples).find((s) =>
          s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
        )?.value;
      const lbl = { group: "lab", app: "echo" };
      assert.equal(value("burrow_groups_online", {}), 1);
      assert.equal(value("burrow_app_up", lbl), 1);
      assert.equal(value("burrow_app_bytes_total", { ...lbl, direction: "in" }), 301_000);
      assert.equal(value("burrow_app_bytes_total", { ...lbl, direction: "out" }), 301_000);
      assert.equal(value("burrow_app_connections_total", lbl), 2);
      assert.equal(value("burrow_work_wait_seconds_count", {}), 2);
      const om = await fetch(`${base}/metrics`, {
        headers: { ...auth, accept: "application/openmetrics-text; version=1.0.0" },
      });
      assert.match(om.headers.get("content-type") ?? "", /^application\/openmetrics-text/);
      await parseReference(await om.text(), "openmetrics"); // strict: throws if malformed
    }

    // A wrong token is a refusal and an auth failure, in the events and the metrics.
    await assert.rejects(
      startClient({ server: `127.0.0.1:${server.addr.port}`, token: "wrong", group: "intruder" }),
      (err: Error) => (err as { code?: string }).code === "auth_failed",
    );
    const metricsText = () => fetch(`${base}/metrics`, { headers: auth }).then((r) => r.text());
    await until(metricsText, (t) => /^burrow_auth_failures_total 1$/m.test(t), 10_000);
    await until(
      metricsText,
      (t) => /^burrow_refusals_total\{cause="auth_failed"\} 1$/m.test(t),
      10_000,
    );

    // The client goes away: the group stays listed as offline with its last address.
    await client.close();
    const offline = await until(groups, (g) => g[0]?.online === false, 10_000);
    assert.equal(offline[0]?.clientAddr, lab?.clientAddr);
    assert.equal(offline[0]?.reason, "client stopped");
    assert.equal(offline[0]?.apps[0]?.bytesIn, 301_000, "totals survive going offline");
    // It comes back: a reconnect, and the counters carry on.
    client = await startClient({
      server: `127.0.0.1:${server.addr.port}`,
      token: "dash-token",
      group: "lab",
    });
    await client.expose({ name: "echo", local: app.addr });
    await until(groups, (g) => g[0]?.online === true && g[0]?.apps.length === 1, 10_000);
    const { events } = await api<{ events: Array<{ id: number; kind: string; code?: string }> }>(
      "/api/events",
    );
    assert.deepEqual(events.map((e) => e.kind), ["connect", "refused", "disconnect", "reconnect"]);
    assert.equal(events[1]?.code, "auth_failed");
    const newer = await api<{ events: unknown[] }>(`/api/events?since=${events[2]?.id}`);
    assert.equal(newer.events.length, 1);
    // Nothing secret anywhere in what the dashboard serves.
    for (const path of ["/api/status", "/api/groups", "/api/events", "/metrics", "/"]) {
      const body = await (await fetch(base + path, { headers: auth })).text();
      for (const secret of ["dash-token", PASSWORD]) {
        assert.ok(!body.includes(secret), `${path} shows a secret`);
      }
    }
  } finally {
    await client.close();
    await server.close();
    app.close();
  }
});

Deno.test("the dashboard asks for a password, with security headers, and streams events", async () => {
  await using server = await libraryServer({
    token: "t",
    dashboard: { bind: "127.0.0.1:0", password: PASSWORD },
    limits: { authFailures: 100 }, // this test sends 16 wrong ones on purpose
  });
  const base = `http://127.0.0.1:${server.dashboardAddr?.port}`;
  for (
    const headers of [
      {},
      { authorization: basic("admin", "nope") },
      {
        authorization: basic("root", PASSWORD),
      },
      { authorization: "Basic !!!" },
      { authorization: `Bearer ${PASSWORD}` },
    ]
  ) {
    for (const path of ["/", "/api/status", "/metrics", "/api/stream"]) {
      const res = await fetch(base + path, { headers });
      assert.equal(res.status, 401, `${path} with ${JSON.stringify(headers)}`);
      assert.equal(res.headers.get("www-authenticate"), 'Basic realm="burrow", charset="UTF-8"');
      await res.body?.cancel();
    }
  }
  const auth = { authorization: basic("admin", PASSWORD) };
  const page = await fetch(`${base}/`, { headers: auth });
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-security-policy") ?? "", /script-src 'self'/);
  assert.match(page.headers.get("content-security-policy") ?? "", /frame-ancestors 'none'/);
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  assert.equal(page.headers.get("x-frame-options"), "DENY");
  const html = await page.text();
  assert.ok(!/<script>/.test(html), "no inline script");
  for (const [path, type] of [["/app.js", "text/javascript"], ["/app.css", "text/css"]]) {
    const res = await fetch(base + path, { headers: auth });
    assert.match(res.headers.get("content-type") ?? "", new RegExp(`^${type}`));
    assert.ok((await res.text()).length > 1000);
  }
  const missing = await fetch(`${base}/nope`, { headers: auth });
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
  const post = await fetch(`${base}/api/status`, { method: "POST", headers: auth });
  assert.equal(post.status, 405);
  await post.body?.cancel();

  // The live stream: a snapshot at once, then each new event.
  const stream = await fetch(`${base}/api/stream`, { headers: auth });
  assert.match(stream.headers.get("content-type") ?? "", /^text\/event-stream/);
  const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const readUntil = async (re: RegExp) => {
    while (!re.test(seen)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended before ${re}: ${seen}`);
      seen += value;
    }
  };
  await readUntil(/event: snapshot\ndata: \{"status":/);
  await assert.rejects(
    startClient({ server: `127.0.0.1:${server.addr.port}`, token: "bad", group: "g" }),
  );
  await readUntil(/event: event\ndata: \{[^\n]*"kind":"refused"/);
  await reader.cancel();
});

Deno.test("server.ts: off loopback without a password exits 2 with a line saying why", async () => {
  const proc = new Proc("server.ts", [
    "--bind",
    "127.0.0.1:0",
    "--token",
    "t",
    "--dashboard",
    "0.0.0.0:0",
    "--dashboard-password",
    "",
  ]);
  assert.equal(await proc.exitCode(), 2);
  assert.match(proc.stderr.text, /--dashboard-password: must not be empty/);
  const open = new Proc("server.ts", [
    "--bind",
    "127.0.0.1:0",
    "--token",
    "t",
    "--dashboard",
    "0.0.0.0:0",
  ]);
  assert.equal(await open.exitCode(), 2);
  const lines = open.stderr.all.filter((l) => l.trim() !== "");
  assert.equal(lines.length, 1, open.stderr.text);
  assert.match(
    lines[0] ?? "",
    /^burrow-server: dashboard: refusing to serve on 0\.0\.0\.0:0 without a password.*--dashboard-password/,
  );
  assert.equal(open.stdout.text, "", "nothing was bound");
});

Deno.test("server.ts --dashboard prints its address; the password comes from the environment", async () => {
  await using server = await startServerProc({
    token: "t",
    args: ["--dashboard", "127.0.0.1:0", "--dashboard-user", "ops"],
    env: { BURROW_DASHBOARD_PASSWORD: "env-pass-31" },
  });
  const m = await server.proc.stdout.wait(/^dashboard http:\/\/127\.0\.0\.1:(\d+)\/$/);
  const base = `http://127.0.0.1:${m[1]}`;
  const denied = await fetch(`${base}/api/status`);
  assert.equal(denied.status, 401);
  await denied.body?.cancel();
  const res = await fetch(`${base}/api/status`, {
    headers: { authorization: basic("ops", "env-pass-31") },
  });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).version, "0.1.0");
  assert.ok(!server.proc.stderr.text.includes("env-pass-31"), "the password is never logged");
});

Deno.test("wrong dashboard passwords lock the source out, even from the right password", async () => {
  await using server = await libraryServer({
    token: "t",
    tls: "ephemeral",
    dashboard: { bind: "127.0.0.1:0", password: PASSWORD },
    limits: { authFailures: 3, lockoutSeconds: 60 },
  });
  const base = `http://127.0.0.1:${server.dashboardAddr?.port}`;
  const get = async (headers: Record<string, string>) => {
    const res = await fetch(`${base}/api/status`, { headers });
    await res.body?.cancel();
    return res;
  };
  // No credentials at all (a browser's first request) is not a failure.
  for (let i = 0; i < 5; i++) assert.equal((await get({})).status, 401);
  assert.equal((await get({ authorization: basic("admin", PASSWORD) })).status, 200);
  for (let i = 0; i < 3; i++) {
    assert.equal((await get({ authorization: basic("admin", `guess-${i}`) })).status, 401);
  }
  const locked = await get({ authorization: basic("admin", PASSWORD) });
  assert.equal(locked.status, 429);
  assert.ok(Number(locked.headers.get("retry-after")) > 0);
  assert.ok(server.status().totals.authFailures >= 3);
});
