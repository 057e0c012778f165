/**
 * The request inspector between a tunnel stream and the local app: the
 * edge's requests come through it (the "tunnel" is a loopback TCP hop here),
 * are recorded with headers and the first 64 KiB of each body, served as
 * JSON, replayed on demand (only with the replay header, only from its own
 * Host), and upgrades still pass. Then the page in headless Chromium.
 */

import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { HttpEdge } from "../../lib/http/edge.ts";
import { Inspector } from "../../lib/http/inspect/inspector.ts";
import type { RecordedRequest } from "../../lib/http/inspect/recorder.ts";
import { RouteTable } from "../../lib/http/routes.ts";
import { httpApp, request, until } from "../helpers/http.ts";

const LOOPBACK = { hostname: "127.0.0.1", port: 0 };
const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = new URL("../artifacts/", import.meta.url).pathname;
const noChromium = await Deno.stat(CHROMIUM).then(
  () => undefined,
  () => "chromium is not installed",
);

/** app → inspector (fed by a loopback "tunnel") → edge, all real sockets. */
async function chain() {
  const seen: string[] = [];
  const app = await httpApp((req, res) => {
    let size = 0;
    req.on("data", (c: Uint8Array) => size += c.length);
    req.on("end", () => {
      seen.push(`${req.method} ${req.url} ${size}`);
      const body = req.url === "/big" ? "b".repeat(100_000) : `hello ${req.method} ${size}`;
      res.writeHead(201, { "content-type": "text/plain", "x-from": "app" });
      res.end(body);
    });
  });
  app.server.on("upgrade", (_req, socket) => {
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    );
    socket.pipe(socket);
  });
  const inspector = await Inspector.start({ bind: LOOPBACK });
  const tunnel = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of tunnel) {
      inspector.handle(conn, { name: "web", local: { hostname: "127.0.0.1", port: app.port } });
    }
  })().catch(() => {});
  const table = new RouteTable();
  table.claim({
    id: "lab/web",
    group: "lab",
    kind: "http",
    hosts: ["web.example.test"],
    paths: [],
  });
  const edge = await HttpEdge.start({
    http: LOOPBACK,
    routes: table,
    dial: () => Deno.connect({ hostname: "127.0.0.1", port: tunnel.addr.port }),
  });
  const page = `http://127.0.0.1:${inspector.addr.port}`;
  return {
    app,
    seen,
    inspector,
    page,
    port: edge.httpAddr?.port ?? 0,
    list: async () =>
      (await (await fetch(`${page}/api/requests`)).json()).requests as RecordedRequest[],
    async [Symbol.asyncDispose]() {
      await edge.close();
      tunnel.close();
      await inspector.close();
      await app.close();
    },
  };
}

Deno.test("requests are recorded with headers and the first 64 KiB of each body, and replayed", async () => {
  await using c = await chain();
  const upload = "u".repeat(100_000);
  assert.equal((await request(c.port, "web.example.test", { path: "/small?x=1" })).status, 201);
  const big = await request(c.port, "web.example.test", {
    method: "POST",
    path: "/big",
    body: upload,
    headers: { "content-type": "text/plain" },
  });
  assert.equal(big.status, 201);
  assert.equal(big.body.length, 100_000, "the user gets the whole body");
  const posted = await request(c.port, "web.example.test", {
    method: "PUT",
    path: "/form",
    body: "a=1",
  });
  assert.equal(posted.body, "hello PUT 3");
  await until(
    () => c.inspector.requests().every((r) => r.durationMs !== undefined),
    "all finished",
  );

  const list = await c.list();
  assert.deepEqual(list.map((r) => `${r.method} ${r.url} ${r.status}`), [
    "PUT /form 201",
    "POST /big 201",
    "GET /small?x=1 201",
  ]);
  const [put, post] = list as [RecordedRequest, RecordedRequest];
  assert.equal(post.app, "web");
  assert.ok((post.durationMs ?? -1) >= 0);
  assert.deepEqual(
    {
      size: post.requestBody.size,
      truncated: post.requestBody.truncated,
      kept: post.requestBody.data.length,
    },
    { size: 100_000, truncated: true, kept: 65536 },
  );
  assert.equal(post.responseBody.size, 100_000);
  assert.ok(
    post.requestHeaders.some(([k, v]) =>
      k.toLowerCase() === "x-forwarded-host" && v === "web.example.test"
    ),
  );
  assert.ok(post.responseHeaders.some(([k, v]) => k === "x-from" && v === "app"));
  assert.deepEqual(put.requestBody, { size: 3, truncated: false, encoding: "utf8", data: "a=1" });

  // Replay: needs its header; a truncated body cannot be replayed; it reaches the app again.
  const without = await fetch(`${c.page}/api/requests/${put.id}/replay`, { method: "POST" });
  assert.equal(without.status, 403);
  await without.body?.cancel();
  const truncated = await fetch(`${c.page}/api/requests/${post.id}/replay`, {
    method: "POST",
    headers: { "x-burrow-replay": "1" },
  });
  assert.equal(truncated.status, 409);
  await truncated.body?.cancel();
  const replayed = await fetch(`${c.page}/api/requests/${put.id}/replay`, {
    method: "POST",
    headers: { "x-burrow-replay": "1" },
  });
  assert.equal(replayed.status, 200);
  const again = await replayed.json() as RecordedRequest;
  assert.equal(again.replayOf, put.id);
  assert.equal(again.status, 201);
  assert.equal(again.responseBody.data, "hello PUT 3");
  assert.deepEqual(c.seen, ["GET /small?x=1 0", "POST /big 100000", "PUT /form 3", "PUT /form 3"]);

  // Another Host (DNS rebinding) is refused.
  const rebound = await request(c.inspector.addr.port, "evil.example:80", {
    path: "/api/requests",
  });
  assert.equal(rebound.status, 421);
});

Deno.test("an upgrade through the inspector still passes, and is recorded with its status", async () => {
  await using c = await chain();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: c.port });
  try {
    await conn.write(new TextEncoder().encode(
      "GET /ws HTTP/1.1\r\nHost: web.example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    ));
    const buf = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) throw new Error(`closed: ${text}`);
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    assert.match(text, /^HTTP\/1\.1 101 /);
    await conn.write(new TextEncoder().encode("ping"));
    let echo = "";
    while (echo.length < 4) {
      const n = await conn.read(buf);
      if (n === null) break;
      echo += new TextDecoder().decode(buf.subarray(0, n));
    }
    assert.equal(echo, "ping");
  } finally {
    conn.close();
  }
  await until(
    () => c.inspector.requests().some((r) => r.status === 101),
    "the upgrade was recorded",
  );
  assert.equal(c.inspector.requests()[0]?.url, "/ws");
});

Deno.test({
  name: `the inspector page lists requests live, shows one and replays it in Chromium${
    noChromium ? ` (skipped: ${noChromium}; apt-get install chromium)` : ""
  }`,
  ignore: noChromium !== undefined,
  // playwright-core keeps its own timers and pipes past close.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await Deno.mkdir(ARTIFACTS, { recursive: true });
    await using c = await chain();
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
      ],
      timeout: 30_000,
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      const errors: string[] = [];
      page.on("pageerror", (err) => errors.push(String(err)));
      page.on("console", (msg) => {
        if (msg.type() === "error") errors.push(msg.text());
      });
      await page.goto(c.page);
      await page.getByText("Requests to the group's http apps show up here").waitFor();
      await request(c.port, "web.example.test", {
        method: "POST",
        path: "/orders?id=7",
        body: '{"item":"<b>tea</b>"}',
        headers: { "content-type": "application/json", "x-trace": "abc123" },
      });
      const row = page.locator("#requests tbody tr", { hasText: "/orders?id=7" });
      await row.waitFor({ timeout: 10_000 });
      assert.match(await row.innerText(), /POST\s+\/orders\?id=7\s+201/);
      await row.click();
      await page.locator("#req-headers", { hasText: "abc123" }).waitFor();
      assert.equal(await page.locator("#req-body").innerText(), '{"item":"<b>tea</b>"}');
      assert.equal(await page.locator("#res-body").innerText(), "hello POST 21");
      assert.equal(await page.locator("#req-body b").count(), 0, "bodies are text, never markup");
      await page.screenshot({ path: `${ARTIFACTS}inspector.png`, fullPage: true });
      await page.getByRole("button", { name: "Replay" }).click();
      await page.locator("#replay-note", { hasText: "replayed as #2: 201" }).waitFor();
      await page.locator("#requests tbody tr").nth(1).waitFor();
      assert.equal(await page.locator("#requests tbody tr").count(), 2);
      assert.deepEqual(c.seen, ["POST /orders?id=7 21", "POST /orders?id=7 21"]);
      await page.setViewportSize({ width: 390, height: 800 });
      const overflow = await page.evaluate(() =>
        (globalThis as unknown as {
          document: { documentElement: { scrollWidth: number; clientWidth: number } };
        })
          .document.documentElement.scrollWidth -
        (globalThis as unknown as { document: { documentElement: { clientWidth: number } } })
          .document
          .documentElement.clientWidth
      );
      assert.ok(overflow <= 1, `the phone layout scrolls sideways by ${overflow}px`);
      await page.screenshot({ path: `${ARTIFACTS}inspector-phone.png`, fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  },
});
