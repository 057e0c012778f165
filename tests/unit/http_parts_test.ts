/**
 * The small parts of the HTTP layer: certificate selection by name, basic
 * auth, the tunnel-stream adapter for node:http (bytes both ways, half-close,
 * backpressure, idle timeout), the inspector's body tap, and the pages.
 */

import assert from "node:assert/strict";
import http from "node:http";
import { BasicAuth } from "../../lib/util/basic_auth.ts";
import { certInfo, CertStore, nameCovers } from "../../lib/http/certs.ts";
import { BodyTap, captureBytes, Recorder } from "../../lib/http/inspect/recorder.ts";
import { toNodeStream } from "../../lib/http/node_stream.ts";
import { pageHtml, PAGES, rawPage } from "../../lib/http/pages.ts";
import { Secret } from "../../lib/util/secret.ts";
import { randomBytes, sha256 } from "../helpers/harness.ts";
import { testCa } from "../helpers/http.ts";

Deno.test("certificates: names read from the SAN, exact before wildcard before default, newest wins", async () => {
  const ca = await testCa("parts CA");
  const store = new CertStore();
  assert.ok(store.empty);
  const wild = await ca.issue(["*.example.test", "example.test"], 30);
  const exact = await ca.issue(["a.example.test"], 10);
  const later = await ca.issue(["a.example.test"], 60);
  const fallback = await ca.issue(["fallback.test"]);
  assert.deepEqual(certInfo(wild.cert).names, ["*.example.test", "example.test"]);
  store.add(fallback, true);
  store.add(wild);
  store.add(exact);
  assert.equal(store.covering("a.example.test")?.names[0], "a.example.test");
  const shortEnd = store.covering("a.example.test")?.notAfter.getTime() ?? 0;
  store.add(later);
  assert.ok(
    (store.covering("a.example.test")?.notAfter.getTime() ?? 0) > shortEnd,
    "the newer one",
  );
  store.add(exact); // an older one added after does not replace it
  assert.ok((store.covering("a.example.test")?.notAfter.getTime() ?? 0) > shortEnd);
  assert.equal(store.covering("b.example.test")?.names[0], "*.example.test");
  assert.equal(store.covering("x.b.example.test"), undefined, "a wildcard covers one label");
  assert.equal(store.covering("other.test"), undefined, "the default is not a covering name");
  assert.ok(store.contextFor("other.test"), "but it answers the handshake");
  assert.ok(nameCovers("*.example.test", "b.example.test"));
  assert.ok(!nameCovers("*.example.test", "example.test"));
  assert.throws(() => store.add({ cert: "not pem", key: fallback.key }), /no PEM certificate/);
  assert.throws(() => store.add({ cert: wild.cert, key: fallback.key }), /does not belong/);
});

Deno.test("basic auth: only the exact user and password pass", async () => {
  const auth = new BasicAuth("alice", new Secret("pä ss:word"));
  const enc = (s: string) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));
  assert.ok(await auth.check(`Basic ${enc("alice:pä ss:word")}`));
  assert.ok(await auth.check(`basic   ${enc("alice:pä ss:word")}`));
  for (
    const wrong of [
      `Basic ${enc("alice:pä ss:wor")}`,
      `Basic ${enc("alice:pä ss:wordx")}`,
      `Basic ${enc("alic:pä ss:word")}`,
      `Bearer ${enc("alice:pä ss:word")}`,
      "Basic !!!",
      "",
      undefined,
      null,
    ]
  ) {
    assert.equal(await auth.check(wrong), false, String(wrong));
  }
});

Deno.test("a tunnel stream carries node:http both ways, with half-close and idle timeout", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = http.createServer((req, res) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c: Uint8Array) => chunks.push(c));
    req.on("end", async () => {
      const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) {
        all.set(c, at);
        at += c.length;
      }
      res.end(await sha256(all));
    });
  });
  Object.defineProperty(server, "listening", { get: () => true });
  const accepted = (async () => {
    const conn = await listener.accept();
    server.emit("connection", toNodeStream(conn, { remoteAddress: "192.0.2.1", remotePort: 4 }));
  })();
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const socket = toNodeStream(client);
  const agent = new http.Agent({ keepAlive: true });
  (agent as unknown as { createConnection: () => unknown }).createConnection = () => socket;
  const post = (body: Uint8Array) =>
    new Promise<string>((resolve, reject) => {
      const req = http.request(
        { agent, method: "POST", path: "/", headers: { host: "x" } },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => text += c);
          res.on("end", () => resolve(text));
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  const body = randomBytes(5 * 1024 * 1024);
  assert.equal(await post(body), await sha256(body));
  assert.equal(await post(body.subarray(0, 10)), await sha256(body.slice(0, 10)), "kept alive");
  await accepted;
  // idle timeout fires, and setTimeout(0, fn) removes fn
  const timedOut = new Promise<void>((resolve) => socket.setTimeout(50, resolve));
  await timedOut;
  const never = () => assert.fail("removed listener called");
  socket.setTimeout(30, never);
  socket.setTimeout(0, never);
  await new Promise((r) => setTimeout(r, 60));
  agent.destroy();
  socket.destroy();
  server.closeAllConnections();
});

Deno.test("body tap: keeps the first bytes, counts all, text or base64, never splits a character", () => {
  const tap = new BodyTap(5);
  tap.add(new TextEncoder().encode("héllo world"));
  const cap = tap.capture();
  assert.deepEqual(cap, { size: 12, truncated: true, encoding: "utf8", data: "héll" });
  const bin = new BodyTap(8);
  bin.add(new Uint8Array([0xff, 0x00, 0xfe]));
  const binCap = bin.capture();
  assert.equal(binCap.encoding, "base64");
  assert.deepEqual([...captureBytes(binCap)], [0xff, 0x00, 0xfe]);
  const recorder = new Recorder(2);
  const fields = {
    app: "a",
    method: "GET",
    url: "/",
    httpVersion: "1.1",
    requestHeaders: [],
    requestBody: cap,
    status: 200,
    responseHeaders: [],
    responseBody: cap,
    startedAt: 0,
  };
  recorder.begin(fields);
  recorder.begin(fields);
  recorder.begin(fields);
  assert.deepEqual(recorder.list().map((r) => r.id), [3, 2], "newest first, oldest dropped");
  assert.deepEqual(recorder.list(2).map((r) => r.id), [3]);
});

Deno.test("pages: every status has a short page, and the raw form has an exact length", () => {
  for (const status of Object.keys(PAGES).map(Number) as (keyof typeof PAGES)[]) {
    const html = pageHtml(status);
    assert.ok(html.length < 1000);
    assert.match(html, new RegExp(`<title>${status} `));
    const raw = rawPage(status, { "retry-after": "3" });
    const [head, body] = raw.split("\r\n\r\n") as [string, string];
    assert.match(head, new RegExp(`^HTTP/1\\.1 ${status} `));
    assert.match(head, /\r\nretry-after: 3\r\n/);
    assert.equal(
      Number(/content-length: (\d+)/.exec(head)?.[1]),
      new TextEncoder().encode(body).length,
    );
  }
});

Deno.test("host metrics: rows per held name, strangers pooled, families the exposition writer takes", async () => {
  const { HostMetrics } = await import("../../lib/http/host_metrics.ts");
  const { renderExposition } = await import("../../lib/dashboard/metrics.ts");
  const { parseNpm } = await import("../helpers/prom_parse.ts");
  const m = new HostMetrics(() => 42);
  const ev = (host: string, status: number, ms: number, routeId?: string) => ({
    host,
    status,
    ms,
    method: "GET",
    scheme: "http" as const,
    bytesIn: 10,
    bytesOut: 100,
    ...(routeId ? { routeId } : {}),
  });
  m.observe(ev("blog.example.test", 200, 3, "lab/blog"));
  m.observe(ev("blog.example.test", 502, 700, "lab/blog"));
  m.observe(ev("random1.example.test", 404, 1));
  m.observe(ev("random2.example.test", 404, 1));
  const rows = m.rows();
  assert.deepEqual(rows.map((r) => [r.host, r.requests, r.app]), [
    ["blog.example.test", 2, "lab/blog"],
    ["", 2, undefined],
  ]);
  assert.deepEqual(rows[0]?.byClass, { "1xx": 0, "2xx": 1, "3xx": 0, "4xx": 0, "5xx": 1 });
  assert.equal(rows[0]?.bytesOut, 200);
  const text = renderExposition(m.families(), "text");
  const parsed = parseNpm(text);
  const requests = parsed.find((f) => f.name === "burrow_http_requests_total");
  assert.ok(requests, text);
  assert.match(text, /burrow_http_requests_total\{host="blog\.example\.test",code="5xx"\} 1/);
  assert.match(
    text,
    /burrow_http_request_duration_seconds_bucket\{host="blog\.example\.test",le="0\.005"\} 1/,
  );
  assert.match(text, /burrow_http_request_duration_seconds_count\{host="blog\.example\.test"\} 2/);
});
