/**
 * The HTTP edge over real sockets: `dial` connects straight to real local
 * `node:http` apps, users are raw TCP sockets, `fetch` and curl. Routing by
 * name and path (also per request on one kept-alive connection), the
 * forwarded headers, streamed bodies both ways, server-sent events,
 * upgrades, auth and its lockout, redirects, the error pages, and hostile
 * input (oversized and slow headers, smuggling attempts).
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type EdgeOptions, HttpEdge } from "../../lib/http/edge.ts";
import type { EdgeRequestEvent } from "../../lib/http/proxy.ts";
import { type Route, RouteTable } from "../../lib/http/routes.ts";
import { UpstreamBusyError } from "../../lib/http/upstream.ts";
import { Secret } from "../../lib/util/secret.ts";
import { randomBytes } from "../helpers/harness.ts";
import {
  echoHeadersApp,
  httpApp,
  KeepAlive,
  rawExchange,
  request,
  statuses,
  streamRequest,
  until,
  writeRepeated,
} from "../helpers/http.ts";

const LOOPBACK = { hostname: "127.0.0.1", port: 0 };

function route(id: string, hosts: string[], extra: Partial<Route> = {}): Route {
  return { id, group: id.split("/")[0] as string, kind: "http", hosts, paths: [], ...extra };
}

/** An edge whose `dial` connects to the app port registered for each route id. */
async function edgeFor(
  apps: Record<string, number>,
  routes: Route[],
  options: Partial<EdgeOptions> = {},
): Promise<{ edge: HttpEdge; table: RouteTable; port: number; dials: string[] } & AsyncDisposable> {
  const table = new RouteTable();
  for (const r of routes) assert.deepEqual(table.claim(r), { ok: true });
  const dials: string[] = [];
  const edge = await HttpEdge.start({
    http: LOOPBACK,
    routes: table,
    dial: async (r) => {
      dials.push(r.id);
      const port = apps[r.id];
      if (port === undefined) throw new Error("no such app");
      return await Deno.connect({ hostname: "127.0.0.1", port });
    },
    ...options,
  });
  return {
    edge,
    table,
    port: edge.httpAddr?.port ?? 0,
    dials,
    [Symbol.asyncDispose]: () => edge.close(),
  };
}

function headerPairs(raw: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i < raw.length; i += 2) {
    const k = (raw[i] as string).toLowerCase();
    out.set(k, [...(out.get(k) ?? []), raw[i + 1] as string]);
  }
  return out;
}

Deno.test("each request on one kept-alive connection is routed by its own Host and path", async () => {
  await using blog = await echoHeadersApp("blog");
  await using api = await echoHeadersApp("api");
  await using wild = await echoHeadersApp("wild");
  await using e = await edgeFor(
    { "g/blog": blog.port, "g/api": api.port, "h/wild": wild.port },
    [
      route("g/blog", ["blog.example.test"]),
      route("g/api", ["blog.example.test"], { paths: ["/api"] }),
      route("h/wild", ["*.example.test"]),
    ],
  );
  using conn = await KeepAlive.open(e.port);
  const seen: string[] = [];
  for (
    const [path, host] of [
      ["/post", "blog.example.test"],
      ["/api/v1", "blog.example.test"],
      ["/x", "other.example.test"],
      ["/", "nobody.example.net"],
      ["/post2", "BLOG.example.test.:80"],
    ]
  ) {
    const res = await conn.send(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    if (res.status !== 200) {
      seen.push(`${res.status}`);
      assert.match(res.body, /404 Not Found/);
      continue;
    }
    const body = JSON.parse(res.body);
    seen.push(`${body.app} ${body.url}`);
    assert.ok(
      !/x-hop/i.test(res.head),
      "a hop-by-hop field the app named in Connection is dropped",
    );
  }
  assert.deepEqual(seen, ["blog /post", "api /api/v1", "wild /x", "404", "blog /post2"]);
  assert.equal(
    e.dials.filter((d) => d === "g/blog").length,
    1,
    "the second request to the app reused the pooled stream",
  );
});

Deno.test("the app gets the forwarded fields set by the edge, host_header, and the path unchanged", async () => {
  await using app = await echoHeadersApp("app");
  await using plain = await echoHeadersApp("plain");
  await using e = await edgeFor(
    { "g/app": app.port, "g/plain": plain.port },
    [
      route("g/app", ["app.example.test"], { hostHeader: "localhost:3000" }),
      route("g/plain", ["plain.example.test"]),
    ],
  );
  const res = await request(e.port, "app.example.test", {
    path: "/a/../b%20c?q=1&r=%2F",
    headers: {
      "x-forwarded-for": "203.0.113.5",
      "x-forwarded-proto": "https",
      "x-real-ip": "6.6.6.6",
      "x-forwarded-host": "evil.example",
      "te": "trailers",
      "connection": "x-forwarded-for",
    },
  });
  const seen = JSON.parse(res.body);
  const h = headerPairs(seen.rawHeaders);
  assert.equal(seen.url, "/a/../b%20c?q=1&r=%2F");
  assert.deepEqual(h.get("host"), ["localhost:3000"]);
  assert.deepEqual(h.get("x-forwarded-for"), ["203.0.113.5, 127.0.0.1"]);
  assert.deepEqual(h.get("x-forwarded-proto"), ["http"]);
  assert.deepEqual(h.get("x-real-ip"), ["127.0.0.1"]);
  assert.deepEqual(h.get("x-forwarded-host"), ["app.example.test"]);
  assert.deepEqual(h.get("via"), ["1.1 burrow"]);
  assert.equal(h.get("te"), undefined);
  assert.equal(res.headers["x-hop"], undefined);
  assert.equal(res.headers["x-app"], "app");

  const other = JSON.parse((await request(e.port, "plain.example.test:8080")).body);
  assert.deepEqual(headerPairs(other.rawHeaders).get("host"), ["plain.example.test:8080"]);
});

Deno.test("error pages: unknown name 404, offline app 502, refusing app 502, full quota 503, none naming internals", async () => {
  const events: EdgeRequestEvent[] = [];
  await using e = await edgeFor(
    { "secretgroup/appdown": 1 }, // port 1: refused
    [
      route("secretgroup/appgone", ["gone.example.test"]),
      route("secretgroup/appdown", ["down.example.test"]),
      route("secretgroup/appfull", ["busy.example.test"]),
    ],
    { observe: (ev) => events.push(ev) },
  );
  e.table.setLive("secretgroup/appgone", false);
  // The busy app's dial says so.
  await e.edge.close();
  const table = e.table;
  const edge = await HttpEdge.start({
    http: LOOPBACK,
    routes: table,
    dial: (r) => {
      if (r.id === "secretgroup/appfull") return Promise.reject(new UpstreamBusyError());
      return Deno.connect({ hostname: "127.0.0.1", port: 1 });
    },
    observe: (ev) => events.push(ev),
  });
  try {
    const port = edge.httpAddr?.port;
    const get = async (host: string, method = "GET") => {
      const res = await request(port ?? 0, host, { method });
      return { status: res.status, body: res.body, type: res.headers["content-type"] };
    };
    for (
      const [host, status] of [
        ["nobody.example.test", 404],
        ["gone.example.test", 502],
        ["down.example.test", 502],
        ["busy.example.test", 503],
      ] as const
    ) {
      const page = await get(host);
      assert.equal(page.status, status, host);
      assert.equal(page.type, "text/html; charset=utf-8");
      assert.match(page.body, new RegExp(`<h1>${status} `));
      for (
        const secret of ["secretgroup", "appgone", "appdown", "appfull", "127.0.0.1", "burrow"]
      ) {
        assert.ok(!page.body.includes(secret), `${status} page names ${secret}`);
      }
      const head = await get(host, "HEAD");
      assert.equal(head.status, status);
      assert.equal(head.body, "");
    }
    const bad = await rawExchange(
      port ?? 0,
      "GET / HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n",
    );
    assert.deepEqual(statuses(bad), [404]);
    const noHost = await rawExchange(port ?? 0, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert.deepEqual(statuses(noHost), [400]);
    // (a request without Host is refused by node:http's parser before it is a request)
    await until(() => events.length >= 9, "every request was observed");
    assert.deepEqual(
      events.filter((ev) => ev.method === "GET").slice(0, 4).map((ev) => [ev.host, ev.status]),
      [["nobody.example.test", 404], ["gone.example.test", 502], ["down.example.test", 502], [
        "busy.example.test",
        503,
      ]],
    );
  } finally {
    await edge.close();
  }
});

Deno.test("bodies stream both ways: 64 MiB up and down with checksums, chunked and by length", async () => {
  const SIZE = 64 * 1024 * 1024;
  const pattern = randomBytes(1024 * 1024);
  const expected = digestRepeated(pattern, SIZE / pattern.length);
  await using app = await httpApp((req, res) => {
    if (req.method === "POST") {
      const hash = new IncrementalHash();
      let n = 0;
      req.on("data", (c: Uint8Array) => {
        n += c.length;
        hash.update(c);
      });
      req.on("end", () => {
        res.end(
          JSON.stringify({ n, sha: hash.digest(), te: req.headers["transfer-encoding"] ?? null }),
        );
      });
      return;
    }
    const chunked = req.url === "/chunked";
    res.writeHead(200, chunked ? {} : { "content-length": String(SIZE) });
    let sent = 0;
    const pump = () => {
      while (sent < SIZE) {
        sent += pattern.length;
        if (!res.write(pattern)) return res.once("drain", pump);
      }
      res.end();
    };
    pump();
  });
  await using e = await edgeFor({ "g/big": app.port }, [route("g/big", ["big.example.test"])]);
  for (const path of ["/length", "/chunked"]) {
    const res = await streamRequest(e.port, "big.example.test", { path });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers["transfer-encoding"], path === "/chunked" ? "chunked" : undefined);
    const hash = new IncrementalHash();
    let n = 0;
    for await (const chunk of res) {
      n += chunk.length;
      hash.update(chunk);
    }
    assert.equal(n, SIZE, path);
    assert.equal(hash.digest(), expected, path);
  }
  // up: a body of unknown length (chunked) and one with a length
  for (const withLength of [false, true]) {
    const res = await streamRequest(e.port, "big.example.test", {
      method: "POST",
      path: "/up",
      headers: withLength ? { "content-length": String(SIZE) } : {},
      body: (req) => writeRepeated(req, pattern, SIZE / pattern.length),
    });
    let text = "";
    for await (const chunk of res) text += chunk;
    const got = JSON.parse(text);
    assert.equal(got.n, SIZE);
    assert.equal(got.sha, expected);
    assert.equal(got.te, withLength ? null : "chunked");
  }
});

Deno.test("server-sent events arrive as they are sent, not when the response ends", async () => {
  let next: (() => void) | undefined;
  await using app = await httpApp((_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    let i = 0;
    const send = () => {
      res.write(`data: event ${i}\n\n`);
      if (++i === 3) return res.end();
      next = send; // the next event goes only once the test saw this one
    };
    send();
  });
  await using e = await edgeFor({ "g/sse": app.port }, [route("g/sse", ["sse.example.test"])]);
  const res = await streamRequest(e.port, "sse.example.test", { path: "/events" });
  res.setEncoding("utf8");
  const reader = res[Symbol.asyncIterator]();
  let text = "";
  for (let i = 0; i < 3; i++) {
    while (!text.includes(`data: event ${i}\n\n`)) {
      const { value, done } = await reader.next();
      assert.ok(!done, `stream ended before event ${i}`);
      text += value;
    }
    const go = next;
    next = undefined;
    go?.();
  }
  assert.equal((await reader.next()).done, true);
});

Deno.test("WebSocket and other upgrades pass through both ways", async () => {
  await using app = await httpApp((_req, res) => res.end("no upgrade"));
  app.server.on("upgrade", (req, socket, head) => {
    if (req.headers.upgrade === "refuse") {
      socket.end("HTTP/1.1 426 Upgrade Required\r\ncontent-length: 4\r\n\r\nnope");
      return;
    }
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade}\r\nConnection: Upgrade\r\n` +
        `X-Seen-Upgrade: ${req.headers.upgrade} ${req.headers["x-forwarded-for"]}\r\n\r\n`,
    );
    if (head.length) socket.write(head);
    socket.pipe(socket); // echo
  });
  await using e = await edgeFor({ "g/ws": app.port }, [route("g/ws", ["ws.example.test"])]);

  // A real WebSocket client: Deno's, with the name given by the URL's host (resolved to loopback).
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: e.port });
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  const enc = new TextEncoder();
  await conn.write(enc.encode(
    "GET /socket HTTP/1.1\r\nHost: ws.example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\nearly`,
  ));
  const got = await readUntil(conn, (t) => t.includes("\r\n\r\nearly"));
  assert.match(got, /^HTTP\/1\.1 101 /);
  assert.match(got, /X-Seen-Upgrade: websocket 127\.0\.0\.1/);
  const payload = randomBytes(200_000);
  const [echoed] = await Promise.all([readBytes(conn, payload.length), writeAllTo(conn, payload)]);
  assert.deepEqual(echoed, payload);
  await conn.closeWrite();
  const rest = await conn.read(new Uint8Array(16));
  assert.equal(rest, null, "a half-close passes through the upgraded stream");
  conn.close();

  const refused = await rawExchange(
    e.port,
    "GET / HTTP/1.1\r\nHost: ws.example.test\r\nUpgrade: refuse\r\nConnection: Upgrade\r\n\r\n",
  );
  assert.match(refused, /^HTTP\/1\.1 426 /);
  assert.match(refused, /\r\n\r\nnope$/);
  const unknown = await rawExchange(
    e.port,
    "GET / HTTP/1.1\r\nHost: none.example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
  );
  assert.deepEqual(statuses(unknown), [404]);
});

Deno.test("basic auth at the edge: 401 without, counted failures, 429 when locked, credentials not forwarded", async () => {
  await using app = await echoHeadersApp("private");
  const failures: string[] = [];
  let lockedFor = 0;
  await using e = await edgeFor(
    { "g/private": app.port },
    [route("g/private", ["private.example.test"], {
      auth: { user: "alice", password: new Secret("wonder land") },
    })],
    {
      guard: {
        lockedFor: () => lockedFor,
        failed: (addr) => {
          failures.push(addr);
          return { lockedOut: failures.length >= 3 };
        },
      },
    },
  );
  const get = (authorization?: string) =>
    request(e.port, "private.example.test", {
      headers: authorization ? { authorization } : {},
    });
  const none = await get();
  assert.equal(none.status, 401);
  assert.equal(none.headers["www-authenticate"], 'Basic realm="burrow", charset="UTF-8"');
  assert.deepEqual(failures, [], "a request without credentials is not a failure");
  for (
    const wrong of [`Basic ${btoa("alice:wonder")}`, `Basic ${btoa("bob:wonder land")}`, "Basic !!"]
  ) {
    const res = await get(wrong);
    assert.equal(res.status, 401);
  }
  assert.deepEqual(failures, ["127.0.0.1", "127.0.0.1", "127.0.0.1"]);
  const ok = await get(`Basic ${btoa("alice:wonder land")}`);
  assert.equal(ok.status, 200);
  const seen = JSON.parse(ok.body);
  assert.equal(headerPairs(seen.rawHeaders).get("authorization"), undefined);
  lockedFor = 42;
  const locked = await get(`Basic ${btoa("alice:wonder land")}`);
  assert.equal(locked.status, 429);
  assert.equal(locked.headers["retry-after"], "42");
});

Deno.test("hostile input: oversized headers and URLs, smuggling with both lengths, slow headers", async () => {
  let reached = 0;
  await using app = await httpApp((_req, res) => {
    reached++;
    res.end("ok");
  });
  await using e = await edgeFor(
    { "g/app": app.port },
    [route("g/app", ["app.example.test"])],
    { limits: { maxHeaderBytes: 8192, maxUrlBytes: 2048, headersTimeoutMs: 1000 } },
  );
  const answer = async (text: string) => {
    using conn = await KeepAlive.open(e.port);
    return (await conn.send(text)).status;
  };
  assert.equal(
    await answer(`GET / HTTP/1.1\r\nHost: app.example.test\r\nX-Big: ${"a".repeat(9000)}\r\n\r\n`),
    431,
  );
  assert.equal(
    await answer(`GET /${"a".repeat(3000)} HTTP/1.1\r\nHost: app.example.test\r\n\r\n`),
    414,
  );
  for (
    const smuggle of [
      "POST / HTTP/1.1\r\nHost: app.example.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: app.example.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: app.example.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
      "POST / HTTP/1.1\r\nHost: app.example.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: app.example.test\r\nHost: other.example.test\r\nConnection: close\r\n\r\n",
      "GET / HTTP/1.1\r\nHost : app.example.test\r\n\r\n",
    ]
  ) {
    assert.equal(await answer(smuggle), 400, smuggle);
  }
  assert.equal(reached, 0, "no hostile request reached the app");
  // Slow headers: the connection is closed once the headers timeout passes.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: e.port });
  const started = Date.now();
  await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: app.example.test\r\n"));
  const text = await readUntil(conn, () => false).catch((err) => String(err));
  conn.close();
  const waited = Date.now() - started;
  assert.ok(waited >= 900 && waited < 8000, `closed after ${waited} ms: ${text}`);
  assert.equal(reached, 0);
});

Deno.test("https_only without an https listener: the app is served on plain HTTP", async () => {
  await using app = await echoHeadersApp("secure");
  await using e = await edgeFor(
    { "g/secure": app.port },
    [route("g/secure", ["secure.example.test"], { httpsOnly: true })],
    { publicHttpsPort: 8443 },
  );
  const raw = await rawExchange(
    e.port,
    "GET /a/b?c=d HTTP/1.1\r\nHost: secure.example.test\r\nConnection: close\r\n\r\n",
  );
  // Without an https listener there is nowhere to send users: the app is served as is.
  assert.deepEqual(statuses(raw), [200]);
});

/** Reads from `conn` until `done(text)` holds; throws at the end of the stream. */
async function readUntil(conn: Deno.Conn, done: (text: string) => boolean): Promise<string> {
  const buf = new Uint8Array(65536);
  let text = "";
  while (!done(text)) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`closed after ${JSON.stringify(text)}`);
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  return text;
}

async function writeAllTo(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

async function readBytes(conn: Deno.Conn, size: number): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  let n = 0;
  while (n < size) {
    const got = await conn.read(out.subarray(n));
    if (got === null) throw new Error(`closed after ${n} of ${size} bytes`);
    n += got;
  }
  return out;
}

/** SHA-256 over a stream of chunks (WebCrypto has no incremental digest). */
class IncrementalHash {
  #hash = createHash("sha256");
  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
  }
  digest(): string {
    return this.#hash.digest("hex");
  }
}

function digestRepeated(chunk: Uint8Array, times: number): string {
  const hash = createHash("sha256");
  for (let i = 0; i < times; i++) hash.update(chunk);
  return hash.digest("hex");
}

Deno.test("a real WebSocket client and server talk through the edge", async () => {
  // The app: Deno's own WebSocket server, echoing text and binary messages.
  const app = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    if (req.headers.get("upgrade") !== "websocket") return new Response("no", { status: 400 });
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onmessage = (e) => socket.send(e.data);
    return response;
  });
  await using e = await edgeFor({ "g/ws": app.addr.port }, [route("g/ws", ["localhost"])]);
  try {
    const ws = new WebSocket(`ws://localhost:${e.port}/chat`);
    ws.binaryType = "arraybuffer";
    const received: (string | ArrayBuffer)[] = [];
    const opened = new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = (ev) => reject(new Error(`websocket error: ${(ev as ErrorEvent).message}`));
    });
    ws.onmessage = (ev) => received.push(ev.data);
    await opened;
    const blob = randomBytes(300_000);
    ws.send("hello through the edge");
    ws.send(blob);
    await until(() => received.length === 2, "both echoes");
    assert.equal(received[0], "hello through the edge");
    assert.deepEqual(new Uint8Array(received[1] as ArrayBuffer), blob);
    const closed = new Promise<CloseEvent>((resolve) => ws.onclose = resolve);
    ws.close(1000, "done");
    assert.equal((await closed).code, 1000);
  } finally {
    await app.shutdown();
  }
});
