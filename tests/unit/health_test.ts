/**
 * The client's health checks (`lib/client/health.ts`, `lib/config/health.ts`):
 * the failure count against `fails`, the options' checks, and real probes
 * against a real TCP listener and a real HTTP server (2xx passes, others
 * and silence fail), and a check that reports each change once.
 */

import assert from "node:assert/strict";
import { HealthCheck, HealthState, probe } from "../../lib/client/health.ts";
import { checkHealthOptions } from "../../lib/config/health.ts";

Deno.test("a replica turns unhealthy after `fails` failures in a row and healthy after one pass", () => {
  const state = new HealthState(3);
  assert.equal(state.record("down"), false);
  assert.equal(state.record(undefined), false, "a pass resets the count");
  assert.equal(state.record("down"), false);
  assert.equal(state.record("down"), false);
  assert.equal(state.healthy, true);
  assert.equal(state.record("still down"), true, "the third in a row changes it");
  assert.equal(state.healthy, false);
  assert.equal(state.reason, "still down");
  assert.equal(state.record("down"), false, "no change, no report");
  assert.equal(state.record(undefined), true);
  assert.equal(state.healthy, true);
  assert.equal(state.reason, undefined);
  const once = new HealthState(1);
  assert.equal(once.record("x"), true);
});

Deno.test("health options: exactly one probe, a path, sane interval and fails", () => {
  assert.equal(checkHealthOptions({ tcp: true }), undefined);
  assert.equal(checkHealthOptions({ http: "/healthz", interval: 0.5, fails: 1 }), undefined);
  assert.match(checkHealthOptions({})!, /exactly one of tcp: true and http/);
  assert.match(checkHealthOptions({ tcp: true, http: "/" })!, /exactly one/);
  assert.match(checkHealthOptions({ http: "healthz" })!, /health\.http: must be a path/);
  assert.match(checkHealthOptions({ http: "/a b" })!, /health\.http/);
  assert.match(checkHealthOptions({ tcp: true, interval: 0 })!, /health\.interval/);
  assert.match(checkHealthOptions({ tcp: true, fails: 1.5 })!, /health\.fails/);
});

Deno.test("a tcp probe passes while the port listens and fails once it is closed", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const local = { hostname: "127.0.0.1", port: listener.addr.port };
  const accepting = (async () => {
    for await (const conn of listener) conn.close();
  })().catch(() => {});
  try {
    assert.equal(await probe(local, { tcp: true }), undefined);
  } finally {
    listener.close();
    await accepting;
  }
  assert.match((await probe(local, { tcp: true }))!, /cannot reach 127\.0\.0\.1:\d+/);
});

Deno.test("an http probe wants a 2xx from the path", async () => {
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/healthz") return new Response("ok");
    if (path === "/created") return new Response(null, { status: 204 });
    return new Response("no", { status: path === "/broken" ? 503 : 404 });
  });
  const local = { hostname: "127.0.0.1", port: server.addr.port };
  assert.equal(await probe(local, { http: "/healthz" }), undefined);
  assert.equal(await probe(local, { http: "/created" }), undefined);
  assert.match((await probe(local, { http: "/broken" }))!, /GET \/broken on .* answered 503/);
  assert.match((await probe(local, { http: "/nope" }))!, /answered 404/);
});

Deno.test("an http probe of something that is not HTTP fails", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const local = { hostname: "127.0.0.1", port: listener.addr.port };
  const serving = (async () => {
    for await (const conn of listener) {
      await conn.write(new TextEncoder().encode("SSH-2.0-OpenSSH_9.6\r\n")).catch(() => {});
      conn.close();
    }
  })().catch(() => {});
  try {
    assert.match((await probe(local, { http: "/healthz" }))!, /no HTTP answer/);
  } finally {
    listener.close();
    await serving;
  }
});

Deno.test("a health check reports each change once: down, then up again", async () => {
  let listener: Deno.TcpListener | undefined = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const serve = (l: Deno.TcpListener) =>
    (async () => {
      for await (const conn of l) conn.close();
    })().catch(() => {});
  let serving = serve(listener);
  const changes: boolean[] = [];
  let changed!: () => void;
  let next = new Promise<void>((resolve) => changed = resolve);
  const check = new HealthCheck({ hostname: "127.0.0.1", port }, {
    tcp: true,
    interval: 0.05,
    fails: 2,
  }, (healthy) => {
    changes.push(healthy);
    changed();
    next = new Promise<void>((resolve) => changed = resolve);
  });
  try {
    const down = next;
    listener.close();
    await serving;
    listener = undefined;
    await down;
    assert.deepEqual(changes, [false]);
    assert.equal(check.state.healthy, false);
    const up = next;
    listener = Deno.listen({ hostname: "127.0.0.1", port });
    serving = serve(listener);
    await up;
    assert.deepEqual(changes, [false, true]);
  } finally {
    check.stop();
    listener?.close();
    await serving;
  }
});
