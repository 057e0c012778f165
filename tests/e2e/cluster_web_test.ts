/**
 * Web apps in a cluster, through the real programs: a real redis-server and
 * three server processes on 127.0.0.2-4, each with its own `--http` and
 * `--https` listener. An http app on a client of one node answers
 * byte-exact (sha256 of bodies both ways) through every node's `--http` by
 * its name; its name is unique cluster-wide (`host_taken` on another
 * node); after its node is killed -9 the client fails over to another node
 * and the name is served again everywhere; a tls app is passed through
 * from another node's `--https` by SNI.
 *
 * @module
 */

import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import tls from "node:tls";
import { join } from "node:path";
import { REDIS_MISSING, type RedisProcess, startRedis } from "../helpers/redis.ts";
import { nodeApi, type NodeProc, startNode } from "../helpers/cluster_nodes.ts";
import {
  portBlock,
  type Proc,
  randomBytes,
  sha256,
  startClient,
  writeAll,
} from "../helpers/harness.ts";
import { waitFor } from "../helpers/cluster.ts";
import { httpApp, testCa } from "../helpers/http.ts";
import { makeTempDir, makeTempFileSync } from "../helpers/temp.ts";
import { webReady } from "../helpers/web_server.ts";

const TOKEN = "cluster-web-token";
const HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const ignore = REDIS_MISSING !== undefined;

interface WebNode {
  node: NodeProc;
  httpPort: number;
  httpsPort: number;
}

/** A store and three nodes with web listeners and a wildcard certificate for `*.tunnel.test`. */
class WebCluster implements AsyncDisposable {
  redis!: RedisProcess;
  nodes: WebNode[] = [];
  stack = new AsyncDisposableStack();
  dir!: string;
  /** The CA of every node's `*.tunnel.test` certificate. */
  caPem!: string;

  static async start(): Promise<WebCluster> {
    const c = new WebCluster();
    c.dir = await makeTempDir({ prefix: "burrow-cluster-web-" });
    c.stack.defer(() => Deno.remove(c.dir, { recursive: true }));
    const ca = await testCa("cluster web CA");
    c.caPem = ca.caPem;
    const wild = await ca.issue(["*.tunnel.test"]);
    await Deno.writeTextFile(join(c.dir, "wild.crt"), wild.cert);
    await Deno.writeTextFile(join(c.dir, "wild.key"), wild.key);
    c.redis = await startRedis();
    c.stack.defer(() => c.redis.stop());
    const ports = portBlock(10).spec;
    try {
      c.nodes = await Promise.all(HOSTS.map(async (host, i) => {
        const node = await startNode({
          name: `w${i + 1}`,
          host,
          store: c.redis.url,
          ports,
          token: TOKEN,
          args: [
            "--http",
            `${host}:0`,
            "--https",
            `${host}:0`,
            "--domain",
            "tunnel.test",
            "--https-cert",
            join(c.dir, "wild.crt"),
            "--https-key",
            join(c.dir, "wild.key"),
          ],
        });
        c.stack.use(node.proc);
        const h = await node.proc.stdout.wait(/^http http:\/\/[\d.]+:(\d+)\/$/);
        const s = await node.proc.stdout.wait(/^https https:\/\/[\d.]+:(\d+)\/$/);
        return { node, httpPort: Number(h[1]), httpsPort: Number(s[1]) };
      }));
    } catch (err) {
      await c.stack.disposeAsync();
      throw err;
    }
    return c;
  }

  logs(): string {
    return this.nodes.map((n) =>
      `--- ${n.node.name}:\n${n.node.proc.stderr.all.slice(-30).join("\n")}`
    ).join("\n");
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stack.disposeAsync();
  }
}

/** A Lua script that returns every hash value and string in the store, joined. */
const DUMP = `local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  local t = redis.call('TYPE', k).ok
  if t == 'hash' then
    for _, v in ipairs(redis.call('HGETALL', k)) do out[#out + 1] = v end
  elseif t == 'string' then
    out[#out + 1] = redis.call('GET', k)
  end
end
return table.concat(out, ' ')`;

/** A client of `group` with one web app, whose `server` lists `nodes` in order. */
function webClient(nodes: WebNode[], group: string, app: string): Proc & { file: string } {
  const file = makeTempFileSync({ prefix: "burrow-cluster-web-", suffix: ".yaml" });
  writeGroup(file, nodes, group, app);
  return Object.assign(startClient(file), { file });
}

/** Writes (or rewrites: the client follows it) a group file. */
function writeGroup(file: string, nodes: WebNode[], group: string, app: string): void {
  const servers = nodes.map((n) => n.node.control).join(", ");
  Deno.writeTextFileSync(
    file,
    `server: [${servers}]\ntoken: ${TOKEN}\ngroup: ${group}\nheartbeat_interval: 1\n` +
      `apps:\n${app}`,
  );
}

/** One request to HOST:PORT with `Host: name`; the body read whole. */
function ask(
  host: string,
  port: number,
  name: string,
  o: { method?: string; path?: string; body?: Uint8Array; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: Uint8Array<ArrayBuffer>; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      hostname: host,
      port,
      method: o.method ?? "GET",
      path: o.path ?? "/",
      headers: { host: name, ...o.headers },
      agent: false,
    }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("end", () => {
        const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let off = 0;
        for (const c of chunks) {
          body.set(c, off);
          off += c.length;
        }
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(o.body);
  });
}

/** True when `name` answers 200 through HOST:PORT now. */
async function serves(host: string, port: number, name: string): Promise<boolean> {
  try {
    return (await ask(host, port, name, { path: "/ping" })).status === 200;
  } catch {
    return false;
  }
}

/** An http app: `/big` is a fixed 2 MiB body, POST `/echo` answers its body, `/ping` says pong. */
async function siteApp(big: Uint8Array) {
  const app = await httpApp((req, res) => {
    if (req.url === "/big") {
      res.writeHead(200, {
        "content-length": String(big.length),
        "x-seen-for": req.headers["x-forwarded-for"] ?? "",
      });
      return res.end(big);
    }
    if (req.url === "/echo") {
      const chunks: Uint8Array[] = [];
      req.on("data", (c: Uint8Array) => chunks.push(c));
      req.on("end", () => {
        res.writeHead(200);
        for (const c of chunks) res.write(c);
        res.end();
      });
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("pong");
  });
  app.server.on("upgrade", (req, socket, head) => {
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `X-Seen: ${req.headers["x-forwarded-for"]} ${req.headers.host}\r\n\r\n`,
    );
    if (head.length) socket.write(head);
    socket.pipe(socket); // echo
  });
  return app;
}

/** A WebSocket upgrade to `name` through HOST:PORT, then 1 MB echoed: the 101's head. */
async function upgradeEcho(host: string, port: number, name: string): Promise<string> {
  const conn = await Deno.connect({ hostname: host, port });
  try {
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    await writeAll(
      conn,
      new TextEncoder().encode(
        `GET /socket HTTP/1.1\r\nHost: ${name}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ),
    );
    const buf = new Uint8Array(1 << 16);
    let head = "";
    while (!head.includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      head += new TextDecoder().decode(buf.subarray(0, n));
    }
    const payload = randomBytes(1_000_000);
    const got = new Uint8Array(payload.length);
    const reading = (async () => {
      for (let have = 0; have < got.length;) {
        const n = await conn.read(got.subarray(have));
        if (n === null) throw new Error(`the echo ended after ${have} bytes`);
        have += n;
      }
    })();
    await writeAll(conn, payload);
    await reading;
    assert.equal(await sha256(got), await sha256(payload), "the upgraded stream's echo");
    return head;
  } finally {
    conn.close();
  }
}

const SITE = (port: number) =>
  `  - name: web\n    type: http\n    local: 127.0.0.1:${port}\n    subdomain: site\n`;
/** The same app again behind basic auth, as `priv`. */
const PRIV = (port: number) =>
  `  - name: priv\n    type: http\n    local: 127.0.0.1:${port}\n    subdomain: priv\n` +
  `    auth: { user: alice, password: "wonder-land-42" }\n`;

Deno.test({
  name:
    "cluster web: an http app is served byte-exact through every node by name, unique, and back after its node dies",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using cluster = await WebCluster.start();
    const [a, b, c] = cluster.nodes as [WebNode, WebNode, WebNode];
    const big = randomBytes(2 << 20);
    await using app = await siteApp(big);
    const name = "site.tunnel.test";
    await using client = webClient([a, b], "site", SITE(app.port) + PRIV(app.port));
    await webReady(client, "site", "web");
    await webReady(client, "site", "priv");
    try {
      for (const n of cluster.nodes) {
        await waitFor(() => serves(n.node.host, n.httpPort, name), `${n.node.name} serves ${name}`);
      }
      const want = await sha256(big);
      for (const n of cluster.nodes) {
        const got = await ask(n.node.host, n.httpPort, name, { path: "/big" });
        assert.equal(got.status, 200);
        assert.equal(got.body.length, big.length, `${n.node.name}: body length`);
        assert.equal(await sha256(got.body), want, `${n.node.name}: body sha256`);
        // The edge the user reached tells the app the user's address.
        assert.match(String(got.headers["x-seen-for"]), /127\.0\.0\.1/);
        const upload = randomBytes(1 << 20);
        const echoed = await ask(n.node.host, n.httpPort, name, {
          method: "POST",
          path: "/echo",
          body: upload,
        });
        assert.equal(await sha256(echoed.body), await sha256(upload), `${n.node.name}: upload`);
      }
      // A WebSocket upgrade through another node: the raw stream goes both ways, byte-exact.
      const head = await upgradeEcho(c.node.host, c.httpPort, name);
      assert.match(head, /^HTTP\/1\.1 101 /);
      assert.match(head, /X-Seen: 127\.0\.0\.1 site\.tunnel\.test/);
      // Several requests at once through the other nodes.
      await Promise.all([b, c, b, c].map(async (n) => {
        const got = await ask(n.node.host, n.httpPort, name, { path: "/big" });
        assert.equal(await sha256(got.body), want);
      }));
      // Basic auth is checked on every node, against a tag of the credentials (never the password).
      const basic = (pass: string) => ({ authorization: `Basic ${btoa(`alice:${pass}`)}` });
      for (const n of [b, c]) {
        const priv = "priv.tunnel.test";
        await waitFor(
          async () => (await ask(n.node.host, n.httpPort, priv, { path: "/ping" })).status === 401,
          `${n.node.name} asks for credentials for ${priv}`,
        );
        const wrong = await ask(n.node.host, n.httpPort, priv, { headers: basic("nope") });
        assert.equal(wrong.status, 401);
        const right = await ask(n.node.host, n.httpPort, priv, {
          path: "/big",
          headers: basic("wonder-land-42"),
        });
        assert.equal(right.status, 200);
        assert.equal(await sha256(right.body), want);
      }
      const store = await cluster.redis.cli("EVAL", DUMP, "0");
      assert.match(store, /priv\.tunnel\.test/, "the dump shows the claims");
      assert.match(store, /\\?"auth\\?":\\?"[0-9a-f]{64}/, "the claim carries a tag");
      assert.ok(!store.includes("wonder-land-42"), "the password is not in the store");
      // Over another node's --https: it terminates TLS with its own certificate for the name.
      const secure = await httpsGet(c.node.host, c.httpsPort, name, "/big", cluster.caPem);
      assert.equal(secure.status, 200);
      assert.equal(await sha256(secure.body), want, "through w3's --https");
      // One view: another node's API shows the group with its node and its web apps by name.
      const { groups } = await nodeApi(c.node, "api/groups");
      const site = groups.find((g: { name: string }) => g.name === "site");
      assert.equal(site?.node, "w1", JSON.stringify(groups));
      assert.deepEqual(
        site.apps.map((
          x: { name: string; type: string; urls: string[] },
        ) => [x.name, x.type, x.urls]),
        [["priv", "http", ["http://priv.tunnel.test"]], ["web", "http", [
          "http://site.tunnel.test",
        ]]],
      );
      // A name nobody holds is still a 404 on every node.
      assert.equal((await ask(c.node.host, c.httpPort, "nobody.tunnel.test")).status, 404);

      // Another group asking for the same name on another node: host_taken.
      await using rival = webClient([c], "rival", SITE(app.port));
      assert.equal(await rival.exitCode(30_000), 3);
      assert.match(rival.stderr.text, /host_taken|taken by an app on node w1/);

      // The client's node dies: the client fails over to b with its run id and takes the name over.
      const from = client.stdout.count;
      a.node.proc.kill("SIGKILL");
      await a.node.proc.status;
      await webReady(client, "site", "web", from);
      for (const n of [b, c]) {
        await waitFor(
          () => serves(n.node.host, n.httpPort, name),
          `${n.node.name} serves ${name} again`,
          30_000,
        );
        const got = await ask(n.node.host, n.httpPort, name, { path: "/big" });
        assert.equal(await sha256(got.body), want, `${n.node.name} after the failover`);
      }
      // A client that stops releases its name cluster-wide: another group takes it on another node.
      await client.stop();
      await waitFor(
        async () => (await ask(c.node.host, c.httpPort, name)).status === 404,
        `${c.node.name} drops ${name}`,
      );
      await using again = await siteApp(big.subarray(0, 1000));
      await using taker = webClient([c], "taker", SITE(again.port));
      await webReady(taker, "taker", "web");
      await waitFor(() => serves(b.node.host, b.httpPort, name), `${b.node.name} relays to w3`);
      const small = await ask(b.node.host, b.httpPort, name, { path: "/big" });
      assert.equal(await sha256(small.body), await sha256(big.subarray(0, 1000)));
    } catch (err) {
      throw new Error(
        `${err}\n${cluster.logs()}\nclient:\n${client.stderr.all.slice(-20).join("\n")}`,
      );
    }
  },
});

Deno.test({
  name:
    "cluster web: a tls app is passed through from another node's --https by SNI; names go with unexpose and with a dead node's lease",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using cluster = await WebCluster.start();
    const [a, b, c] = cluster.nodes as [WebNode, WebNode, WebNode];
    const appCa = await testCa("the app's own CA");
    const pair = await appCa.issue(["db.tunnel.test"]);
    const service = tls.createServer({ cert: pair.cert, key: pair.key }, (socket) => {
      socket.on("data", (d: Uint8Array) => socket.write(d));
      socket.on("end", () => socket.end());
    });
    await new Promise<void>((r) => service.listen(0, "127.0.0.1", () => r()));
    const port = (service.address() as { port: number }).port;
    try {
      await using web = await siteApp(new Uint8Array(10));
      const wild = `  - name: wild\n    type: http\n    local: 127.0.0.1:${web.port}\n` +
        `    hostnames: ["*.wild.tunnel.test"]\n`;
      const apps = wild +
        `  - name: db\n    type: tls\n    local: 127.0.0.1:${port}\n    subdomain: db\n` +
        SITE(web.port).replace("subdomain: site", "subdomain: pub");
      const more = SITE(web.port).replace("name: web", "name: more").replace("site", "more");
      await using client = webClient([a], "vault", apps + more);
      await webReady(client, "vault", "db");
      await webReady(client, "vault", "web");
      await webReady(client, "vault", "more");
      await webReady(client, "vault", "wild");
      // A wildcard name is served through the other nodes for any name under it.
      for (const n of [b, c]) {
        await waitFor(
          () => serves(n.node.host, n.httpPort, "any.wild.tunnel.test"),
          `${n.node.name} serves *.wild.tunnel.test`,
        );
      }
      // An app taken out of the group file is unexposed: its name goes on every node.
      await waitFor(() => serves(c.node.host, c.httpPort, "more.tunnel.test"), "w3 serves more");
      writeGroup(client.file, [a], "vault", apps);
      for (const n of [b, c]) {
        await waitFor(
          async () => (await ask(n.node.host, n.httpPort, "more.tunnel.test")).status === 404,
          `${n.node.name} drops an unexposed app's name`,
        );
      }
      const data = randomBytes(1 << 20);
      const want = await sha256(data);
      for (const n of [b, c, a]) {
        await waitFor(
          async () => (await tlsEcho(n.node.host, n.httpsPort, appCa.caPem, data)) === want,
          `${n.node.name} passes db.tunnel.test through`,
          30_000,
        ).catch((err) => {
          throw new Error(`${err}\n${cluster.logs()}`);
        });
      }
      // The holding node dies and its client does not come back: its names go with its lease (3 s).
      await waitFor(() => serves(c.node.host, c.httpPort, "pub.tunnel.test"), "w3 serves pub");
      a.node.proc.kill("SIGKILL");
      await a.node.proc.status;
      const died = Date.now();
      for (const n of [b, c]) {
        await waitFor(
          async () => (await ask(n.node.host, n.httpPort, "pub.tunnel.test")).status === 404,
          `${n.node.name} drops the dead node's name`,
          30_000,
        );
      }
      console.log(`dead node's host names dropped after ${Date.now() - died} ms (lease 3000 ms)`);
    } finally {
      await new Promise<void>((r) => service.close(() => r()));
    }
  },
});

/** Sends `data` over TLS to `db.tunnel.test` via HOST:PORT and returns the sha256 of the echo. */
function tlsEcho(host: string, port: number, ca: string, data: Uint8Array): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Uint8Array[] = [];
    const socket = tls.connect({ host, port, servername: "db.tunnel.test", ca }, () => {
      socket.end(data);
    });
    socket.on("data", (d: Uint8Array) => chunks.push(d));
    socket.on("end", async () => {
      const all = new Uint8Array(chunks.reduce((n, d) => n + d.length, 0));
      let off = 0;
      for (const d of chunks) {
        all.set(d, off);
        off += d.length;
      }
      resolve(await sha256(all));
    });
    socket.on("error", () => resolve(""));
  });
}

/** A GET over TLS to HOST:PORT for `name` (SNI and Host), trusting `ca`; the body read whole. */
function httpsGet(
  host: string,
  port: number,
  name: string,
  path: string,
  ca: string,
): Promise<{ status: number; body: Uint8Array<ArrayBuffer> }> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host,
      port,
      path,
      servername: name,
      headers: { host: name },
      ca,
      agent: false,
    }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("end", () => {
        const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let off = 0;
        for (const c of chunks) {
          body.set(c, off);
          off += c.length;
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}
