/**
 * Per-host figures of the HTTP edge with the real programs: a web app's
 * row in `/api/groups` (its URLs instead of a port, requests, open
 * requests, bytes, status classes per host name) and the `burrow_http_*`
 * families on `/metrics`, checked with the reference Prometheus parser.
 */

import assert from "node:assert/strict";
import { startClient } from "../helpers/harness.ts";
import { httpApp, request, streamRequest } from "../helpers/http.ts";
import { parseReference, referencePython } from "../helpers/prom_parse.ts";
import { webGroupFile, webReady, webServer } from "../helpers/web_server.ts";

const PASSWORD = "metrics-pass-77";
const AUTH = { authorization: `Basic ${btoa(`ops:${PASSWORD}`)}` };

Deno.test({
  name: referencePython.path
    ? "a web app's dashboard row and burrow_http_* metrics count requests per host"
    : `a web app's dashboard row and metrics (skipped: ${referencePython.missing})`,
  ignore: !referencePython.path,
  fn: async () => {
    let release = () => {};
    const held = new Promise<void>((r) => release = r);
    await using app = await httpApp((req, res) => {
      req.resume();
      if (req.url === "/hold") {
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("started\n");
        held.then(() => res.end("done\n"));
        return;
      }
      if (req.url === "/missing") {
        res.writeHead(404, { "content-length": "7" });
        res.end("nothing");
        return;
      }
      res.writeHead(200, { "content-length": "5" });
      res.end("hello");
    });
    await using s = await webServer(
      ["--dashboard", "127.0.0.1:0", "--dashboard-user", "ops"],
      { BURROW_DASHBOARD_PASSWORD: PASSWORD },
    );
    const dash = await s.proc.stdout.wait(/^dashboard http:\/\/127\.0\.0\.1:(\d+)\/$/);
    const base = `http://127.0.0.1:${dash[1]}`;
    await using client = startClient(webGroupFile(
      s.port,
      "lab",
      `  - name: site\n    type: http\n    local: 127.0.0.1:${app.port}\n    subdomain: site\n`,
    ));
    const urls = await webReady(client, "lab", "site");

    for (let i = 0; i < 3; i++) {
      const res = await request(s.httpPort, "site.tunnel.test", { method: "POST", body: "abcd" });
      assert.equal(res.status, 200);
      assert.equal(res.body, "hello");
    }
    assert.equal((await request(s.httpPort, "site.tunnel.test", { path: "/missing" })).status, 404);
    assert.equal((await request(s.httpPort, "stranger.tunnel.test")).status, 404);

    const groups = async () => {
      const res = await fetch(`${base}/api/groups`, { headers: AUTH });
      assert.equal(res.status, 200);
      const all = (await res.json()).groups;
      return all.find((g: { name: string }) => g.name === "lab").apps
        .find((a: { name: string }) => a.name === "site");
    };
    const metrics = async () => {
      const res = await fetch(`${base}/metrics`, { headers: AUTH });
      assert.equal(res.status, 200);
      return await parseReference(await res.text(), "text");
    };
    const sample = (
      families: Awaited<ReturnType<typeof metrics>>,
      family: string,
      name: string,
      labels: Record<string, string>,
    ) =>
      families.find((f) => f.name === family)?.samples.find((s) =>
        s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
      )?.value;

    const row = await groups();
    assert.equal(row.type, "http");
    assert.deepEqual(row.urls, urls, "the row shows the app's URLs");
    assert.equal(row.port, 0);
    assert.equal(row.online, true);
    assert.equal(row.connectionsTotal, 4);
    assert.equal(row.connections, 0);
    assert.equal(row.bytesIn, 12);
    assert.equal(row.bytesOut, 3 * 5 + 7);
    assert.equal(row.hosts.length, 1);
    assert.equal(row.hosts[0].host, "site.tunnel.test");
    assert.deepEqual(row.hosts[0].byClass, { "1xx": 0, "2xx": 3, "3xx": 0, "4xx": 1, "5xx": 0 });

    let families = await metrics();
    const host = { host: "site.tunnel.test" };
    assert.equal(
      sample(families, "burrow_http_requests", "burrow_http_requests_total", {
        ...host,
        code: "2xx",
      }),
      3,
    );
    assert.equal(
      sample(families, "burrow_http_requests", "burrow_http_requests_total", {
        ...host,
        code: "4xx",
      }),
      1,
    );
    assert.equal(
      sample(families, "burrow_http_requests", "burrow_http_requests_total", {
        host: "",
        code: "4xx",
      }),
      1,
      "names nobody holds are pooled under the empty host",
    );
    assert.equal(
      sample(
        families,
        "burrow_http_received_bytes",
        "burrow_http_received_bytes_total",
        host,
      ),
      12,
    );
    assert.equal(
      sample(families, "burrow_http_sent_bytes", "burrow_http_sent_bytes_total", host),
      22,
    );
    assert.equal(
      sample(
        families,
        "burrow_http_request_duration_seconds",
        "burrow_http_request_duration_seconds_count",
        host,
      ),
      4,
    );

    // A request still streaming counts as open, in the row and on /metrics.
    const streaming = await streamRequest(s.httpPort, "site.tunnel.test", { path: "/hold" });
    assert.equal(streaming.statusCode, 200);
    let open = 0;
    const deadline = Date.now() + 10_000;
    while (open !== 1 && Date.now() < deadline) {
      open = (await groups()).connections;
      if (open !== 1) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(open, 1);
    families = await metrics();
    assert.equal(
      sample(families, "burrow_http_requests_open", "burrow_http_requests_open", host),
      1,
    );
    let body = "";
    streaming.setEncoding("utf8");
    streaming.on("data", (c: string) => body += c);
    const ended = new Promise((r) => streaming.on("end", r));
    release();
    await ended;
    assert.equal(body, "started\ndone\n");
    let after = -1;
    const closing = Date.now() + 10_000;
    while (after !== 0 && Date.now() < closing) {
      after = (await groups()).connections;
      if (after !== 0) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(after, 0, "the finished request is no longer open");
    assert.equal((await groups()).connectionsTotal, 5);

    // The page's script renders URLs for a web app.
    const script = await fetch(`${base}/app.js`, { headers: AUTH });
    assert.match(await script.text(), /app\.urls/);
  },
});
