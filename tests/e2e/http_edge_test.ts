/**
 * The HTTP edge with the real programs, for what the unit tests cover only
 * against an in-process edge: every forwarded field (over HTTP and HTTPS),
 * `host_header`, a WebSocket echo and server-sent events through the
 * tunnel, basic auth with its 401 and the lockout guard, `https_only`
 * redirects, the 404/502/503 pages, and hostile input (oversized headers,
 * both `Content-Length` and `Transfer-Encoding`, slow headers).
 */

import assert from "node:assert/strict";
import https from "node:https";
import { join } from "node:path";
import { freePort, randomBytes, startClient, startServer } from "../helpers/harness.ts";
import {
  echoHeadersApp,
  httpApp,
  KeepAlive,
  rawExchange,
  request,
  streamRequest,
} from "../helpers/http.ts";
import { makeTempDir } from "../helpers/temp.ts";
import { WEB_TOKEN, webGroupFile, webReady, webServer } from "../helpers/web_server.ts";

const BUSY_TOKEN = "busy-group-token-5150";

function fieldsOf(rawHeaders: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    out.set(name, [...(out.get(name) ?? []), rawHeaders[i + 1] as string]);
  }
  return out;
}

/** One request over HTTPS to the edge, with `host` as SNI and `Host`. */
function httpsRequest(
  port: number,
  host: string,
  ca: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      hostname: "127.0.0.1",
      port,
      servername: host,
      ca,
      path: "/",
      headers: { host, ...headers },
      agent: false,
    }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => body += c);
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** Reads from `conn` until `done(text)` holds. */
async function readUntil(conn: Deno.Conn, done: (text: string) => boolean): Promise<string> {
  const buf = new Uint8Array(65536);
  let text = "";
  const decoder = new TextDecoder();
  while (!done(text)) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`closed after ${JSON.stringify(text.slice(0, 200))}`);
    text += decoder.decode(buf.subarray(0, n), { stream: true });
  }
  return text;
}

async function readBytes(conn: Deno.Conn, size: number): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  let off = 0;
  while (off < size) {
    const n = await conn.read(out.subarray(off));
    if (n === null) throw new Error(`closed after ${off} of ${size} bytes`);
    off += n;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

Deno.test("the edge through the real programs: fields, WebSocket, SSE, auth and lockout, https_only, error pages", async (t) => {
  const dir = await makeTempDir({ prefix: "burrow-edge-e2e-" });
  try {
    await Deno.writeTextFile(
      join(dir, "users.yaml"),
      `- group: busy\n  token: ${BUSY_TOKEN}\n  max_connections: 1\n`,
      { mode: 0o600 },
    );
    await Deno.writeTextFile(
      join(dir, "server.yaml"),
      "users: users.yaml\nlimits:\n  auth_failures: 3\n  lockout_seconds: 60\n",
    );
    await using echo = await echoHeadersApp("echo");
    await using renamed = await echoHeadersApp("renamed");
    let nextEvent: (() => void) | undefined;
    const sentAt: number[] = [];
    await using sse = await httpApp((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      let i = 0;
      const send = () => {
        sentAt.push(Date.now());
        res.write(`data: event ${i} at ${sentAt[i]}\n\n`);
        if (++i === 3) return res.end();
        nextEvent = send; // the next one goes once the test saw this one
      };
      send();
    });
    await using ws = await httpApp((_req, res) => res.end("no upgrade"));
    ws.server.on("upgrade", (req, socket, head) => {
      socket.write(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `X-Seen: ${req.headers["x-forwarded-for"]} ${req.headers.host}\r\n\r\n`,
      );
      if (head.length) socket.write(head);
      socket.pipe(socket); // echo
    });
    const gone = await freePort();

    await using s = await webServer(["--config", join(dir, "server.yaml")]);
    await using client = startClient(webGroupFile(
      s.port,
      "lab",
      [
        ["echo", echo.port, ""],
        ["renamed", renamed.port, "    host_header: inner.local:8080\n"],
        ["sse", sse.port, ""],
        ["ws", ws.port, ""],
        ["private", echo.port, "    auth: {user: alice, password: wonder land}\n"],
        ["secure", echo.port, "    https_only: true\n"],
        ["gone", gone, ""],
      ].map(([name, port, extra]) =>
        `  - name: ${name}\n    type: http\n    local: 127.0.0.1:${port}\n    subdomain: ${name}\n${extra}`
      ).join(""),
    ));
    for (const app of ["echo", "renamed", "sse", "ws", "private", "secure", "gone"]) {
      await webReady(client, "lab", app);
    }

    await t.step(
      "forwarded fields: For appended, Proto and Real-IP never from the user",
      async () => {
        const spoof = {
          "x-forwarded-for": "203.0.113.9",
          "x-forwarded-proto": "https",
          "x-real-ip": "6.6.6.6",
          "x-forwarded-host": "evil.example",
        };
        const plain = await request(s.httpPort, "echo.tunnel.test", { headers: spoof });
        assert.equal(plain.status, 200);
        const h = fieldsOf(JSON.parse(plain.body).rawHeaders);
        assert.deepEqual(h.get("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
        assert.deepEqual(h.get("x-forwarded-proto"), ["http"]);
        assert.deepEqual(h.get("x-real-ip"), ["127.0.0.1"]);
        assert.deepEqual(h.get("x-forwarded-host"), ["echo.tunnel.test"]);
        assert.deepEqual(h.get("host"), ["echo.tunnel.test"]);
        const tls = await httpsRequest(s.httpsPort, "echo.tunnel.test", s.caPem, spoof);
        assert.equal(tls.status, 200);
        const ht = fieldsOf(JSON.parse(tls.body).rawHeaders);
        assert.deepEqual(ht.get("x-forwarded-proto"), ["https"]);
        assert.deepEqual(ht.get("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
        assert.deepEqual(ht.get("x-real-ip"), ["127.0.0.1"]);
        const re = await request(s.httpPort, "renamed.tunnel.test");
        const hr = fieldsOf(JSON.parse(re.body).rawHeaders);
        assert.deepEqual(hr.get("host"), ["inner.local:8080"], "host_header");
        assert.deepEqual(hr.get("x-forwarded-host"), ["renamed.tunnel.test"]);
      },
    );

    await t.step("a WebSocket echo through the tunnel", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.httpPort });
      try {
        const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
        await writeAll(
          conn,
          new TextEncoder().encode(
            "GET /socket HTTP/1.1\r\nHost: ws.tunnel.test\r\nUpgrade: websocket\r\n" +
              `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
          ),
        );
        const head = await readUntil(conn, (text) => text.includes("\r\n\r\n"));
        assert.match(head, /^HTTP\/1\.1 101 /);
        assert.match(head, /X-Seen: 127\.0\.0\.1 ws\.tunnel\.test/);
        const payload = randomBytes(1_000_000);
        const [echoed] = await Promise.all([
          readBytes(conn, payload.length),
          writeAll(conn, payload),
        ]);
        assert.deepEqual(echoed, payload);
      } finally {
        conn.close();
      }
    });

    await t.step("server-sent events arrive as they are sent", async () => {
      const res = await streamRequest(s.httpPort, "sse.tunnel.test", { path: "/events" });
      assert.equal(res.headers["content-type"], "text/event-stream");
      res.setEncoding("utf8");
      const reader = res[Symbol.asyncIterator]();
      let text = "";
      const arrivedAt: number[] = [];
      for (let i = 0; i < 3; i++) {
        // The app sends event i+1 only after this one arrived: a buffering proxy would hang here.
        while (!text.includes(`data: event ${i} at `)) {
          const { value, done } = await reader.next();
          assert.ok(!done, `stream ended before event ${i}`);
          text += value;
        }
        arrivedAt.push(Date.now());
        const go = nextEvent;
        nextEvent = undefined;
        go?.();
      }
      assert.equal((await reader.next()).done, true);
      for (let i = 0; i < 3; i++) {
        assert.ok(text.includes(`data: event ${i} at ${sentAt[i]}\n\n`));
        assert.ok((arrivedAt[i] as number) >= (sentAt[i] as number));
      }
    });

    await t.step("https_only: a 308 to the same name and path on the https listener", async () => {
      const res = await request(s.httpPort, "secure.tunnel.test", { path: "/a/b?c=1" });
      assert.equal(res.status, 308);
      assert.equal(res.headers.location, `https://secure.tunnel.test:${s.httpsPort}/a/b?c=1`);
      const tls = await httpsRequest(s.httpsPort, "secure.tunnel.test", s.caPem);
      assert.equal(tls.status, 200);
      assert.equal(JSON.parse(tls.body).app, "echo");
    });

    await t.step(
      "error pages: 404 for an unknown name, 502 for an app that does not answer",
      async () => {
        const missing = await request(s.httpPort, "nobody.tunnel.test");
        assert.equal(missing.status, 404);
        assert.match(missing.body, /No site is served under this name/);
        const down = await request(s.httpPort, "gone.tunnel.test");
        assert.equal(down.status, 502);
        assert.match(down.body, /offline or did not answer/);
        for (const page of [missing.body, down.body]) {
          assert.doesNotMatch(page, /lab|127\.0\.0\.1|burrow\/|Error|at /);
        }
      },
    );

    await t.step("503 while the group has its max_connections open", async () => {
      await using busyApp = await echoHeadersApp("busy");
      const held = await Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const heldPort = (held.addr as Deno.NetAddr).port;
      const accepted: Deno.Conn[] = [];
      const accepting = (async () => {
        for await (const c of held) accepted.push(c);
      })();
      const file = join(dir, "busy.yaml");
      await Deno.writeTextFile(
        file,
        `server: 127.0.0.1:${s.port}\ntoken: ${BUSY_TOKEN}\ngroup: busy\napps:\n` +
          `  - name: web\n    type: http\n    local: 127.0.0.1:${busyApp.port}\n    subdomain: busy\n` +
          `  - name: tcp\n    local: 127.0.0.1:${heldPort}\n`,
      );
      await using busy = startClient(file);
      await webReady(busy, "busy", "web");
      const tcp = await busy.stdout.wait(/^ready busy\/tcp 127\.0\.0\.1:(\d+)/, 20_000);
      // (Requests in flight and kept-alive upstream streams: tests/e2e/web_quota_test.ts.)
      const user = await Deno.connect({ hostname: "127.0.0.1", port: Number(tcp[1]) });
      try {
        const deadline = Date.now() + 10_000;
        while (accepted.length === 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.equal(accepted.length, 1, "the TCP user reached the app");
        const full = await request(s.httpPort, "busy.tunnel.test");
        assert.equal(full.status, 503);
        assert.match(full.body, /busy/);
        assert.doesNotMatch(full.body, /max_connections|users file/);
      } finally {
        user.close();
        for (const c of accepted) c.close();
        held.close();
        await accepting;
      }
    });

    await t.step("auth: 401 with WWW-Authenticate, counted failures, then locked out", async () => {
      const get = (authorization?: string) =>
        request(s.httpPort, "private.tunnel.test", {
          headers: authorization ? { authorization } : {},
        });
      const none = await get();
      assert.equal(none.status, 401);
      assert.equal(none.headers["www-authenticate"], 'Basic realm="burrow", charset="UTF-8"');
      const ok = await get(`Basic ${btoa("alice:wonder land")}`);
      assert.equal(ok.status, 200);
      assert.equal(fieldsOf(JSON.parse(ok.body).rawHeaders).get("authorization"), undefined);
      for (let i = 0; i < 3; i++) {
        assert.equal((await get(`Basic ${btoa(`alice:wrong${i}`)}`)).status, 401);
      }
      const locked = await get(`Basic ${btoa("alice:wonder land")}`);
      assert.equal(locked.status, 429, "the right password is refused while locked out");
      assert.ok(Number(locked.headers["retry-after"]) > 0);
      // The lockout guard is the server's: it holds the source's client logins too, so it comes last.
      assert.ok(!(s.proc.stderr.text + s.proc.stdout.text).includes("wonder land"));
    });

    await t.step("hostile input: 431, both lengths refused, slow headers cut off", async () => {
      using big = await KeepAlive.open(s.httpPort);
      const oversized = await big.send(
        `GET / HTTP/1.1\r\nHost: echo.tunnel.test\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
      );
      assert.equal(oversized.status, 431);
      for (
        const smuggle of [
          "POST / HTTP/1.1\r\nHost: echo.tunnel.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
          "POST / HTTP/1.1\r\nHost: echo.tunnel.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        ]
      ) {
        const raw = await rawExchange(s.httpPort, smuggle);
        assert.match(raw, /^HTTP\/1\.1 400 /, smuggle);
        assert.doesNotMatch(raw, /"app":"echo"/, "the smuggled request never reached the app");
      }
      // Slow headers: a head never finished is cut off at the edge's headers timeout (20 s).
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.httpPort });
      const started = Date.now();
      try {
        await writeAll(
          conn,
          new TextEncoder().encode("GET / HTTP/1.1\r\nHost: echo.tunnel.test\r\n"),
        );
        const ended = await readUntil(conn, () => false).catch((err) => String(err));
        const waited = Date.now() - started;
        assert.ok(waited >= 15_000 && waited < 60_000, `closed after ${waited} ms: ${ended}`);
      } finally {
        conn.close();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an https_only app on a server without --https is refused: the client exits 3 naming the fix", async () => {
  await using app = await echoHeadersApp("secure");
  await using server = await startServer({
    token: WEB_TOKEN,
    args: ["--http", "127.0.0.1:0", "--domain", "tunnel.test"],
  });
  await server.proc.stdout.wait(/^http http:\/\/127\.0\.0\.1:(\d+)\/$/);
  await using client = startClient(webGroupFile(
    server.port,
    "lab",
    `  - name: secure\n    type: http\n    local: 127.0.0.1:${app.port}\n    subdomain: secure\n` +
      "    https_only: true\n",
  ));
  assert.equal(await client.exitCode(20_000), 3);
  assert.match(
    client.stderr.text,
    /https_only: this server has no --https listener to redirect to .*\(bad_request\)/,
  );
});
