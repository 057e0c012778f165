/**
 * Web apps end to end, with the real programs: `server.ts --http --https
 * --domain` and `client.ts` with `type: http` and `type: tls` apps in its
 * group file. Routing by name and path through the tunnel, the `ready`
 * URLs, the forwarded fields, HTTPS with HTTP/2 (curl), TLS passthrough,
 * `host_taken` (exit 3), a name answering 502 while its client is away and
 * again once it is back, and keys that do not fit a type (exit 2).
 */

import assert from "node:assert/strict";
import { makeTempDir } from "../helpers/temp.ts";
import tls from "node:tls";
import { join } from "node:path";
import { freePort, startClient, startServer } from "../helpers/harness.ts";
import { pebbleMissing, startPebble } from "../helpers/pebble.ts";
import { CURL, curl, echoHeadersApp, request, testCa } from "../helpers/http.ts";
import { WEB_TOKEN, webGroupFile, webReady, webServer } from "../helpers/web_server.ts";

Deno.test("http apps by name and path through the real programs, with their ready URLs", async () => {
  await using blog = await echoHeadersApp("blog");
  await using api = await echoHeadersApp("api");
  await using s = await webServer();
  const file = webGroupFile(
    s.port,
    "lab",
    `  - name: blog
    type: http
    local: 127.0.0.1:${blog.port}
    subdomain: blog
  - name: api
    type: http
    local: 127.0.0.1:${api.port}
    hostnames: [blog.tunnel.test]
    paths: [/api]
    host_header: localhost
`,
  );
  await using client = startClient(file);
  assert.deepEqual(await webReady(client, "lab", "blog"), [
    `https://blog.tunnel.test:${s.httpsPort}/`,
    `http://blog.tunnel.test:${s.httpPort}/`,
  ]);
  assert.deepEqual(await webReady(client, "lab", "api"), [
    `https://api-lab.tunnel.test:${s.httpsPort}/`,
    `http://api-lab.tunnel.test:${s.httpPort}/`,
    `https://blog.tunnel.test:${s.httpsPort}/`,
    `http://blog.tunnel.test:${s.httpPort}/`,
  ]);
  const at = async (host: string, path: string) => {
    const res = await request(s.httpPort, host, { path });
    assert.equal(res.status, 200, `${host}${path}: ${res.body}`);
    return JSON.parse(res.body);
  };
  const post = await at("blog.tunnel.test", "/post/1");
  assert.equal(post.app, "blog");
  assert.equal(post.url, "/post/1");
  const fields = new Map<string, string>();
  for (let i = 0; i < post.rawHeaders.length; i += 2) {
    fields.set(post.rawHeaders[i].toLowerCase(), post.rawHeaders[i + 1]);
  }
  assert.equal(fields.get("x-forwarded-for"), "127.0.0.1");
  assert.equal(fields.get("x-forwarded-proto"), "http");
  assert.equal(fields.get("x-forwarded-host"), "blog.tunnel.test");
  const apiAnswer = await at("blog.tunnel.test", "/api/users");
  assert.equal(apiAnswer.app, "api");
  assert.equal(apiAnswer.rawHeaders[1], "localhost", "host_header reached the app");
  assert.equal((await at("api-lab.tunnel.test", "/api")).app, "api");
  assert.equal(
    (await request(s.httpPort, "api-lab.tunnel.test")).status,
    404,
    "paths hold on every name",
  );
  assert.equal((await request(s.httpPort, "nobody.tunnel.test")).status, 404);

  if (CURL) {
    const h2 = await curl([
      "--http2",
      "--cacert",
      s.caFile,
      "--resolve",
      `blog.tunnel.test:${s.httpsPort}:127.0.0.1`,
      "-w",
      "\n%{http_version}",
      `https://blog.tunnel.test:${s.httpsPort}/secure`,
    ]);
    assert.equal(h2.code, 0, h2.err);
    const [body, version] = h2.out.split("\n");
    assert.equal(version, "2");
    assert.equal(JSON.parse(body as string).url, "/secure");
  }
});

Deno.test("a name is held by one app: a second client gets host_taken and exits 3", async () => {
  await using app = await echoHeadersApp("one");
  await using s = await webServer();
  const apps =
    `  - name: web\n    type: http\n    local: 127.0.0.1:${app.port}\n    subdomain: shared\n`;
  await using first = startClient(webGroupFile(s.port, "first", apps));
  await webReady(first, "first", "web");
  await using second = startClient(webGroupFile(s.port, "second", apps));
  assert.equal(await second.exitCode(20_000), 3);
  assert.match(second.stderr.text, /shared\.tunnel\.test.*held by another app|host_taken/);
});

Deno.test("while its client is away a name answers 502, and it is taken back on return", async () => {
  await using app = await echoHeadersApp("back");
  await using s = await webServer();
  const file = webGroupFile(
    s.port,
    "lab",
    `  - name: web\n    type: http\n    local: 127.0.0.1:${app.port}\n    subdomain: back\n`,
  );
  const first = startClient(file);
  await webReady(first, "lab", "web");
  assert.equal((await request(s.httpPort, "back.tunnel.test")).status, 200);
  await first.stop();
  let status = 0;
  for (let i = 0; i < 100 && status !== 502; i++) {
    status = (await request(s.httpPort, "back.tunnel.test")).status;
    if (status !== 502) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(status, 502);
  await using again = startClient(file);
  await webReady(again, "lab", "web");
  assert.equal((await request(s.httpPort, "back.tunnel.test")).status, 200);
});

Deno.test("a tls app is passed through by SNI with its own certificate", async () => {
  const appCa = await testCa("app's own CA");
  const pair = await appCa.issue(["db.tunnel.test"]);
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...pair });
  const serving = (async () => {
    for await (const conn of listener) {
      (async () => {
        const buf = new Uint8Array(1024);
        const n = await conn.read(buf).catch(() => null);
        if (n !== null) {
          await conn.write(
            new TextEncoder().encode(`echo:${new TextDecoder().decode(buf.subarray(0, n))}`),
          );
        }
        conn.close();
      })();
    }
  })();
  try {
    await using s = await webServer();
    const file = webGroupFile(
      s.port,
      "lab",
      `  - name: db\n    type: tls\n    local: 127.0.0.1:${listener.addr.port}\n    subdomain: db\n`,
    );
    await using client = startClient(file);
    assert.deepEqual(await webReady(client, "lab", "db"), [`tls://db.tunnel.test:${s.httpsPort}`]);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({
        host: "127.0.0.1",
        port: s.httpsPort,
        servername: "db.tunnel.test",
        ca: appCa.caPem,
      }, () => {
        assert.equal(socket.getPeerCertificate().subject?.CN, "db.tunnel.test");
        socket.write("hello");
      });
      let text = "";
      socket.setEncoding("utf8");
      socket.on("data", (c: string) => text += c);
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    assert.equal(answer, "echo:hello");
  } finally {
    listener.close();
    await serving.catch(() => {});
  }
});

Deno.test("keys that do not fit an app's type are config errors naming the key (exit 2)", async () => {
  const file = webGroupFile(
    1,
    "lab",
    "  - name: ssh\n    local: 127.0.0.1:22\n    subdomain: nope\n",
  );
  await using client = startClient(file);
  assert.equal(await client.exitCode(), 2);
  assert.match(client.stderr.text, /apps\.0\.subdomain|subdomain.*not a key of a tcp app/);
  const file2 = webGroupFile(
    1,
    "lab",
    "  - name: web\n    type: http\n    local: 127.0.0.1:80\n    remote_port: 8080\n",
  );
  await using client2 = startClient(file2);
  assert.equal(await client2.exitCode(), 2);
  assert.match(client2.stderr.text, /remote_port.*not a key of an http app/);
});

Deno.test("the client's request inspector records what passes through the tunnel", async () => {
  await using app = await echoHeadersApp("seen");
  await using s = await webServer();
  const path = webGroupFile(
    s.port,
    "lab",
    `  - name: web\n    type: http\n    local: 127.0.0.1:${app.port}\n    subdomain: seen\n`,
  );
  Deno.writeTextFileSync(path, Deno.readTextFileSync(path) + "inspect: 127.0.0.1:0\n");
  await using client = startClient(path);
  const m = await client.stdout.wait(/^inspect http:\/\/127\.0\.0\.1:(\d+)\/$/, 20_000);
  await webReady(client, "lab", "web");
  const res = await request(s.httpPort, "seen.tunnel.test", {
    method: "POST",
    path: "/form?x=1",
    body: "a=1&b=2",
  });
  assert.equal(res.status, 200);
  assert.equal(JSON.parse(res.body).body, 7);
  const list = await (await fetch(`http://127.0.0.1:${m[1]}/api/requests`)).json();
  const [first] = list.requests;
  assert.equal(first.method, "POST");
  assert.equal(first.url, "/form?x=1");
  assert.equal(first.status, 200);
  assert.equal(first.requestBody.data, "a=1&b=2");
  assert.ok(
    first.requestHeaders.some(([k, v]: [string, string]) =>
      k === "X-Forwarded-Host" && v === "seen.tunnel.test"
    ),
  );
  const page = await fetch(`http://127.0.0.1:${m[1]}/`);
  assert.match(await page.text(), /burrow inspector/);
});

Deno.test({
  name: `the server gets a certificate from Pebble for a live app's name and serves it${
    pebbleMissing ? ` (skipped: ${pebbleMissing})` : ""
  }`,
  ignore: pebbleMissing !== undefined,
  async fn() {
    const httpPort = freePort();
    await using pebble = await startPebble(httpPort, 3600);
    const dir = await makeTempDir({ prefix: "burrow-acme-e2e-" });
    await Deno.writeTextFile(join(dir, "pebble-ca.pem"), pebble.tlsCa);
    await Deno.writeTextFile(
      join(dir, "server.yaml"),
      `http: { bind: "127.0.0.1:${httpPort}" }\nhttps: { bind: "127.0.0.1:0" }\n` +
        `domain: acme.test\nstate_dir: ${join(dir, "state")}\n` +
        `acme:\n  email: ops@acme.test\n  directory: ${pebble.directory}\n  ca: pebble-ca.pem\n`,
    );
    await using app = await echoHeadersApp("secured");
    const server = await startServer({
      token: WEB_TOKEN,
      args: ["--config", join(dir, "server.yaml")],
    });
    try {
      const https = Number(
        (await server.proc.stdout.wait(/^https https:\/\/127\.0\.0\.1:(\d+)\/$/))[1],
      );
      const file = webGroupFile(
        server.port,
        "lab",
        `  - name: web\n    type: http\n    local: 127.0.0.1:${app.port}\n    subdomain: secure\n`,
      );
      await using client = startClient(file);
      await webReady(client, "lab", "web");
      await server.proc.stderr.wait(/certificate for secure\.acme\.test issued/, 30_000);
      const root = await pebble.issuingRoot();
      const cert = await new Promise<tls.PeerCertificate>((resolve, reject) => {
        const socket = tls.connect({
          host: "127.0.0.1",
          port: https,
          servername: "secure.acme.test",
          ca: root,
        }, () => {
          resolve(socket.getPeerCertificate());
          socket.destroy();
        });
        socket.on("error", reject);
      });
      assert.equal(cert.subjectaltname, "DNS:secure.acme.test");
      const key = await Deno.stat(join(dir, "state", "acme", "certs", "secure.acme.test.key"));
      assert.equal((key.mode ?? 0) & 0o777, 0o600);
    } finally {
      await server[Symbol.asyncDispose]();
    }
  },
});
