/**
 * Load-balanced web apps end to end, with the real `server.ts --http
 * --https --domain` and two `client.ts` processes serving one `shared:
 * true` group: one host name with two replicas (no `host_taken`), requests
 * spread evenly (fresh and kept-alive connections alike), one replica's
 * local service stopped without any user seeing an error, kill -9 of a
 * replica, health checks (an unhealthy replica gets no requests; `/api/groups`
 * lists the replicas), the name gone (404) with the last replica, `replica_mismatch`
 * for a replica that names other hosts, and a `type: tls` app passed
 * through to two replicas.
 *
 * @module
 */

import assert from "node:assert/strict";
import http from "node:http";
import tls from "node:tls";
import { type Proc, startClient } from "../helpers/harness.ts";
import { KeepAlive, request, testCa } from "../helpers/http.ts";
import { webGroupFile, webReady, webServer } from "../helpers/web_server.ts";

const SHARED = "shared: true\nheartbeat_interval: 1\n";

/** A local web app that answers with its name, and can be stopped and started on its port. */
class Site implements AsyncDisposable {
  readonly name: string;
  port = 0;
  served = 0;
  #server: http.Server | undefined;

  private constructor(name: string) {
    this.name = name;
  }

  static async start(name: string): Promise<Site> {
    const site = new Site(name);
    await site.start();
    return site;
  }

  async start(): Promise<void> {
    const server = http.createServer((req, res) => {
      req.resume();
      this.served++;
      res.writeHead(200, { "content-length": String(this.name.length) });
      res.end(this.name);
    });
    await new Promise<void>((resolve) => server.listen(this.port, "127.0.0.1", () => resolve()));
    this.port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  /** Stops listening and closes its connections (a service that went away). */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** The app entry of a replica of `site` for `local`. */
function siteApp(port: number, extra = ""): string {
  return `  - name: site\n    type: http\n    local: 127.0.0.1:${port}\n    subdomain: site\n${extra}`;
}

/** Answers of `n` requests to site.tunnel.test, each on a fresh connection, by body. */
async function spread(httpPort: number, n: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const res = await request(httpPort, "site.tunnel.test");
    assert.equal(res.status, 200, `request ${i}: ${res.status} ${res.body}`);
    out.set(res.body, (out.get(res.body) ?? 0) + 1);
  }
  return out;
}

Deno.test("an http app served by two replicas of a shared group: one name, even spread, a stopped service and kill -9 unseen by users, 404 after the last", async () => {
  await using a = await Site.start("alpha");
  await using b = await Site.start("bravo");
  await using s = await webServer();
  await using ra = startClient(webGroupFile(s.port, "farm", siteApp(a.port), SHARED));
  const urls = await webReady(ra, "farm", "site");
  await using rb = startClient(webGroupFile(s.port, "farm", siteApp(b.port), SHARED));
  assert.deepEqual(
    await webReady(rb, "farm", "site"),
    urls,
    "the second replica has the same name",
  );

  // Even spread, on fresh connections and on one kept-alive connection.
  const fresh = await spread(s.httpPort, 20);
  assert.deepEqual([fresh.get("alpha"), fresh.get("bravo")], [10, 10], "fresh connections");
  using keep = await KeepAlive.open(s.httpPort);
  const kept = new Map<string, number>();
  for (let i = 0; i < 20; i++) {
    const res = await keep.send("GET / HTTP/1.1\r\nHost: site.tunnel.test\r\n\r\n");
    assert.equal(res.status, 200);
    kept.set(res.body, (kept.get(res.body) ?? 0) + 1);
  }
  assert.deepEqual([kept.get("alpha"), kept.get("bravo")], [10, 10], "one kept-alive connection");

  // alpha's local service goes away: every request is still answered, by bravo.
  await a.stop();
  const down = await spread(s.httpPort, 20);
  assert.deepEqual([...down.keys()], ["bravo"]);
  assert.match(s.proc.stderr.text, /replica .* cannot take a request \(client could not reach/);
  // It comes back: both serve again.
  await a.start();
  const back = await spread(s.httpPort, 10);
  assert.ok((back.get("alpha") ?? 0) >= 4, `alpha serves again: ${[...back]}`);

  // bravo's client is killed: users still get answers, from alpha.
  rb.kill("SIGKILL");
  await rb.status;
  const killed = await spread(s.httpPort, 10);
  assert.deepEqual([...killed.keys()], ["alpha"]);

  // The last replica leaves: the name goes with it.
  await ra.stop();
  let status = 0;
  const deadline = Date.now() + 10_000;
  while ((status = (await request(s.httpPort, "site.tunnel.test")).status) !== 404) {
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(status, 404, "no replica left: the name is free");
});

Deno.test("health checks of web replicas: an unhealthy one gets no requests until it is healthy again", async () => {
  await using a = await Site.start("alpha");
  await using b = await Site.start("bravo");
  await using s = await webServer(
    ["--dashboard", "127.0.0.1:0", "--dashboard-user", "ops"],
    { BURROW_DASHBOARD_PASSWORD: "farm-dash" },
  );
  const dash = await s.proc.stdout.wait(/^dashboard http:\/\/127\.0\.0\.1:(\d+)\/$/);
  const replicas = async (): Promise<{ healthy: boolean; connectionsTotal: number }[]> => {
    const res = await fetch(`http://127.0.0.1:${dash[1]}/api/groups`, {
      headers: { authorization: `Basic ${btoa("ops:farm-dash")}` },
    });
    const groups = (await res.json()).groups as { name: string; apps: unknown[] }[];
    const site = groups.find((g) => g.name === "farm")?.apps
      .find((a) => (a as { name: string }).name === "site") as { replicas?: [] } | undefined;
    return site?.replicas ?? [];
  };
  const health = "    health: { tcp: true, interval: 0.2, fails: 1 }\n";
  await using ra = startClient(webGroupFile(s.port, "farm", siteApp(a.port, health), SHARED));
  await webReady(ra, "farm", "site");
  await using rb = startClient(webGroupFile(s.port, "farm", siteApp(b.port, health), SHARED));
  await webReady(rb, "farm", "site");
  assert.deepEqual(
    (await replicas()).map((r) => r.healthy),
    [true, true],
    "/api/groups lists both",
  );
  await a.stop();
  await s.proc.stderr.wait(/farm\/site: replica .* is unhealthy/, 10_000);
  assert.deepEqual((await replicas()).map((r) => r.healthy), [false, true]);
  const from = s.proc.stderr.all.length;
  const down = await spread(s.httpPort, 10);
  assert.deepEqual([...down.keys()], ["bravo"]);
  assert.ok(
    !s.proc.stderr.all.slice(from).some((l) => /cannot take a request/.test(l)),
    "the unhealthy replica was not even tried",
  );
  await a.start();
  await s.proc.stderr.wait(/farm\/site: replica .* is healthy again/, 10_000);
  const back = await spread(s.httpPort, 10);
  assert.deepEqual([back.get("alpha"), back.get("bravo")], [5, 5]);
  assert.deepEqual((await replicas()).map((r) => r.connectionsTotal), [5, 15]);
});

Deno.test("a web replica must name the same hosts as the others: replica_mismatch (exit 3)", async () => {
  await using a = await Site.start("alpha");
  await using s = await webServer();
  await using first = startClient(webGroupFile(s.port, "farm", siteApp(a.port), SHARED));
  await webReady(first, "farm", "site");
  const other = siteApp(a.port, "    hostnames: [www.example.org]\n");
  await using odd = startClient(webGroupFile(s.port, "farm", other, SHARED));
  assert.equal(await odd.exitCode(), 3);
  assert.match(odd.stderr.text, /replica_mismatch|same type and host names/);
  assert.equal(
    (await request(s.httpPort, "site.tunnel.test")).body,
    "alpha",
    "the first serves on",
  );
});

/** A TLS service for `name` answering `LABEL:` and what it got, counting its users. */
function tlsService(pair: { cert: string; key: string }, label: string) {
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...pair });
  const state = { port: listener.addr.port, served: 0 };
  const serving = (async () => {
    for await (const conn of listener) {
      (async () => {
        const buf = new Uint8Array(1024);
        const n = await conn.read(buf).catch(() => null);
        if (n !== null) {
          state.served++;
          const text = `${label}:${new TextDecoder().decode(buf.subarray(0, n))}`;
          await conn.write(new TextEncoder().encode(text)).catch(() => {});
        }
        conn.close();
      })();
    }
  })();
  return {
    ...state,
    get served() {
      return state.served;
    },
    async close() {
      listener.close();
      await serving.catch(() => {});
    },
  };
}

/** One passed-through TLS exchange with `db.tunnel.test`: what the service answered. */
function tlsAsk(port: number, ca: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = tls.connect(
      { host: "127.0.0.1", port, servername: "db.tunnel.test", ca },
      () => {
        socket.write("hi");
      },
    );
    let text = "";
    socket.setEncoding("utf8");
    socket.on("data", (c: string) => text += c);
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
  });
}

Deno.test("a tls app served by two replicas: connections passed through to both, one name", async () => {
  const appCa = await testCa("replicas' own CA");
  const pair = await appCa.issue(["db.tunnel.test"]);
  const one = tlsService(pair, "one");
  const two = tlsService(pair, "two");
  try {
    await using s = await webServer();
    const db = (port: number) =>
      `  - name: db\n    type: tls\n    local: 127.0.0.1:${port}\n    subdomain: db\n`;
    const clients: Proc[] = [
      startClient(webGroupFile(s.port, "vault", db(one.port), SHARED)),
      startClient(webGroupFile(s.port, "vault", db(two.port), SHARED)),
    ];
    try {
      for (const c of clients) {
        assert.deepEqual(await webReady(c, "vault", "db"), [`tls://db.tunnel.test:${s.httpsPort}`]);
      }
      const answers = new Map<string, number>();
      for (let i = 0; i < 10; i++) {
        const got = await tlsAsk(s.httpsPort, appCa.caPem);
        answers.set(got, (answers.get(got) ?? 0) + 1);
      }
      assert.deepEqual([answers.get("one:hi"), answers.get("two:hi")], [5, 5]);
    } finally {
      for (const c of clients) await c.stop();
    }
  } finally {
    await one.close();
    await two.close();
  }
});
