/**
 * The edge's `--https` listener: certificates chosen by SNI, HTTP/1.1 and
 * HTTP/2 (curl, by ALPN) with the user's real address seen through the
 * loopback hop, `https_only` redirects from the plain listener, upgrades
 * over TLS, and `tls` apps passed through by SNI with their own
 * certificate, byte for byte.
 */

import assert from "node:assert/strict";
import { makeTempDir, makeTempFile } from "../helpers/temp.ts";
import tls from "node:tls";
import { CertStore } from "../../lib/http/certs.ts";
import { HttpEdge } from "../../lib/http/edge.ts";
import { type Route, RouteTable } from "../../lib/http/routes.ts";
import { randomBytes, sha256 } from "../helpers/harness.ts";
import { CURL, curl, echoHeadersApp, KeepAlive, testCa, until } from "../helpers/http.ts";

const LOOPBACK = { hostname: "127.0.0.1", port: 0 };
const skip = CURL ? "" : " (skipped: curl is not installed; apt-get install curl)";

function route(id: string, hosts: string[], extra: Partial<Route> = {}): Route {
  return { id, group: id.split("/")[0] as string, kind: "http", hosts, paths: [], ...extra };
}

/** Connects with TLS to the edge asking for `servername`; resolves once the handshake is done. */
function tlsConnect(
  port: number,
  servername: string | undefined,
  ca: string,
  alpn: string[] = ["http/1.1"],
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: "127.0.0.1",
      port,
      ...(servername ? { servername } : {}),
      ca,
      ALPNProtocols: alpn,
      rejectUnauthorized: false,
    }, () => resolve(socket));
    socket.once("error", reject);
  });
}

async function setup() {
  const ca = await testCa("edge test CA");
  const certs = new CertStore();
  certs.add(await ca.issue(["default.example.test"]), true);
  certs.add(await ca.issue(["*.example.test"]));
  certs.add(await ca.issue(["blog.example.test"]));
  const caFile = await makeTempFile({ suffix: ".pem" });
  await Deno.writeTextFile(caFile, ca.caPem);
  const blog = await echoHeadersApp("blog");
  const table = new RouteTable();
  table.claim(route("g/blog", ["blog.example.test"]));
  table.claim(route("g/secure", ["secure.example.test"], { httpsOnly: true }));
  const apps: Record<string, number> = { "g/blog": blog.port, "g/secure": blog.port };
  const edge = await HttpEdge.start({
    http: LOOPBACK,
    https: LOOPBACK,
    routes: table,
    certs,
    dial: (r) => Deno.connect({ hostname: "127.0.0.1", port: apps[r.id] ?? 1 }),
  });
  return {
    ca,
    caFile,
    table,
    apps,
    edge,
    httpsPort: edge.httpsAddr?.port ?? 0,
    httpPort: edge.httpAddr?.port ?? 0,
    async [Symbol.asyncDispose]() {
      await edge.close();
      await blog.close();
      await Deno.remove(caFile);
    },
  };
}

Deno.test("the certificate is chosen by SNI: exact, then wildcard, then the default", async () => {
  await using s = await setup();
  for (
    const [name, cn] of [
      ["blog.example.test", "blog.example.test"],
      ["other.example.test", "*.example.test"],
      ["elsewhere.test", "default.example.test"],
      [undefined, "default.example.test"],
    ] as const
  ) {
    const socket = await tlsConnect(s.httpsPort, name, s.ca.caPem);
    assert.equal(socket.getPeerCertificate().subject?.CN, cn, String(name));
    socket.destroy();
  }
});

Deno.test({
  name: `HTTP/1.1 and HTTP/2 over TLS reach the app with the user's real address${skip}`,
  ignore: !CURL,
  async fn() {
    await using s = await setup();
    for (const version of ["--http1.1", "--http2"]) {
      const res = await curl([
        version,
        "--interface",
        "127.0.0.2",
        "--cacert",
        s.caFile,
        "--resolve",
        `blog.example.test:${s.httpsPort}:127.0.0.1`,
        "-w",
        "\n%{http_version}",
        `https://blog.example.test:${s.httpsPort}/p?q=1`,
      ]);
      assert.equal(res.code, 0, res.err);
      const [body, httpVersion] = res.out.split("\n");
      assert.equal(httpVersion, version === "--http2" ? "2" : "1.1");
      const seen = JSON.parse(body as string);
      assert.equal(seen.url, "/p?q=1");
      const fields = new Map<string, string>();
      for (let i = 0; i < seen.rawHeaders.length; i += 2) {
        fields.set(seen.rawHeaders[i].toLowerCase(), seen.rawHeaders[i + 1]);
      }
      assert.equal(fields.get("x-forwarded-for"), "127.0.0.2", "not the loopback hop's address");
      assert.equal(fields.get("x-real-ip"), "127.0.0.2");
      assert.equal(fields.get("x-forwarded-proto"), "https");
      assert.equal(fields.get("host"), `blog.example.test:${s.httpsPort}`);
      assert.equal(fields.get("via"), version === "--http2" ? "2.0 burrow" : "1.1 burrow");
    }
    // An upload over HTTP/2 has no Content-Length here: it reaches the app chunked.
    const up = await curl([
      "--http2",
      "--cacert",
      s.caFile,
      "--resolve",
      `blog.example.test:${s.httpsPort}:127.0.0.1`,
      "-H",
      "content-length:",
      "-H",
      "transfer-encoding: chunked",
      "--data-binary",
      "x".repeat(100_000),
      `https://blog.example.test:${s.httpsPort}/up`,
    ]);
    assert.equal(up.code, 0, up.err);
    assert.equal(JSON.parse(up.out).body, 100_000);
  },
});

Deno.test("https_only: plain HTTP gets a 308 to the same name and path on the https port", async () => {
  await using s = await setup();
  using conn = await KeepAlive.open(s.httpPort);
  const res = await conn.send("GET /a/b?c=d HTTP/1.1\r\nHost: secure.example.test\r\n\r\n");
  assert.equal(res.status, 308);
  assert.match(
    res.head,
    new RegExp(`\r\nlocation: https://secure\\.example\\.test:${s.httpsPort}/a/b\\?c=d`, "i"),
  );
  const plain = await conn.send("GET / HTTP/1.1\r\nHost: blog.example.test\r\n\r\n");
  assert.equal(plain.status, 200, "other apps are served on plain HTTP as they are");
});

Deno.test("a tls app gets the raw connection by SNI and answers with its own certificate", async () => {
  await using s = await setup();
  const appCa = await testCa("app's own CA");
  const appCert = await appCa.issue(["tls.example.test"]);
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...appCert });
  const served = (async () => {
    for await (const conn of listener) {
      // echo until the user half-closes
      (async () => {
        const buf = new Uint8Array(65536);
        while (true) {
          const n = await conn.read(buf).catch(() => null);
          if (n === null) break;
          let off = 0;
          while (off < n) off += await conn.write(buf.subarray(off, n));
        }
        await conn.closeWrite().catch(() => {});
      })();
    }
  })();
  s.table.claim(route("t/app", ["tls.example.test"], { kind: "tls" }));
  s.apps["t/app"] = listener.addr.port;
  try {
    const socket = await tlsConnect(s.httpsPort, "tls.example.test", appCa.caPem, []);
    assert.ok(socket.authorized, `${socket.authorizationError}`);
    assert.equal(socket.getPeerCertificate().subject?.CN, "tls.example.test");
    const payload = randomBytes(3 * 1024 * 1024);
    const received: Uint8Array[] = [];
    const done = new Promise<void>((resolve) => socket.on("end", resolve));
    socket.on("data", (chunk: Uint8Array) => received.push(chunk));
    socket.end(payload);
    await done;
    const all = new Uint8Array(received.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of received) {
      all.set(c, at);
      at += c.length;
    }
    assert.equal(await sha256(all), await sha256(payload));
    socket.destroy();
    // The same listener still terminates the other names.
    const other = await tlsConnect(s.httpsPort, "blog.example.test", s.ca.caPem);
    assert.equal(other.getPeerCertificate().subject?.CN, "blog.example.test");
    other.destroy();
  } finally {
    listener.close();
    await served.catch(() => {});
  }
});

Deno.test("anything but a TLS ClientHello on the https port is dropped", async () => {
  await using s = await setup();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.httpsPort });
  await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: blog.example.test\r\n\r\n"));
  assert.equal(await conn.read(new Uint8Array(100)), null);
  conn.close();
});

Deno.test("an upgrade over TLS (HTTP/1.1 by ALPN) passes through", async () => {
  await using s = await setup();
  const upgraded = await echoUpgradeApp();
  s.apps["g/blog"] = upgraded.port;
  try {
    const socket = await tlsConnect(s.httpsPort, "blog.example.test", s.ca.caPem);
    socket.write(
      "GET /ws HTTP/1.1\r\nHost: blog.example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    );
    let text = "";
    socket.setEncoding("utf8");
    for await (const chunk of socket) {
      text += chunk;
      if (text.includes("\r\n\r\n")) break;
    }
    assert.match(text, /^HTTP\/1\.1 101 /);
    assert.match(text, /x-proto: https/i);
    socket.destroy();
  } finally {
    await upgraded.close();
  }
});

async function echoUpgradeApp() {
  const { httpApp } = await import("../helpers/http.ts");
  const app = await httpApp((_req, res) => res.end());
  app.server.on("upgrade", (req, socket) => {
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n" +
        `x-proto: ${req.headers["x-forwarded-proto"]}\r\n\r\n`,
    );
    socket.pipe(socket);
  });
  return app;
}

Deno.test("over TLS too: oversized headers get 431, both lengths 400, slow headers are cut off", async () => {
  const ca = await testCa("limits CA");
  const certs = new CertStore();
  certs.add(await ca.issue(["blog.example.test"]), true);
  await using app = await echoHeadersApp("blog");
  const table = new RouteTable();
  table.claim(route("g/blog", ["blog.example.test"]));
  const edge = await HttpEdge.start({
    https: LOOPBACK,
    routes: table,
    certs,
    dial: () => Deno.connect({ hostname: "127.0.0.1", port: app.port }),
    limits: { maxHeaderBytes: 8192, headersTimeoutMs: 800 },
  });
  const exchange = async (text: string) => {
    const socket = await tlsConnect(edge.httpsAddr?.port ?? 0, "blog.example.test", ca.caPem);
    socket.write(text);
    socket.setEncoding("utf8");
    let out = "";
    const started = Date.now();
    for await (const chunk of socket) out += chunk;
    return { out, ms: Date.now() - started };
  };
  try {
    const big = await exchange(
      `GET / HTTP/1.1\r\nHost: blog.example.test\r\nX: ${"a".repeat(9000)}\r\n\r\n`,
    );
    assert.match(big.out, /^HTTP\/1\.1 431 /);
    const both = await exchange(
      "POST / HTTP/1.1\r\nHost: blog.example.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert.match(both.out, /^HTTP\/1\.1 400 /);
    const slow = await exchange("GET / HTTP/1.1\r\nHost: blog.example.test\r\n");
    assert.equal(slow.out, "");
    assert.ok(slow.ms >= 700 && slow.ms < 8000, `cut off after ${slow.ms} ms`);
    // A kept-alive connection that keeps asking is not cut off.
    const socket = await tlsConnect(edge.httpsAddr?.port ?? 0, "blog.example.test", ca.caPem);
    let answers = 0;
    socket.on(
      "data",
      (c: Uint8Array) => answers += new TextDecoder().decode(c).split("HTTP/1.1 200").length - 1,
    );
    for (let i = 0; i < 4; i++) {
      socket.write("GET / HTTP/1.1\r\nHost: blog.example.test\r\n\r\n");
      await new Promise((r) => setTimeout(r, 400));
    }
    await until(() => answers === 4, "four answers on one connection over 1.6 s");
    socket.destroy();
  } finally {
    await edge.close();
  }
});

Deno.test({
  name: `HTTP/2 streams 64 MiB down and up through the edge, checksums equal${skip}`,
  ignore: !CURL,
  async fn() {
    const SIZE = 64 * 1024 * 1024;
    const chunk = randomBytes(1024 * 1024);
    const whole = new Uint8Array(SIZE);
    for (let i = 0; i < SIZE; i += chunk.length) whole.set(chunk, i);
    const expected = await sha256(whole);
    const { httpApp } = await import("../helpers/http.ts");
    const { createHash } = await import("node:crypto");
    await using app = await httpApp((req, res) => {
      if (req.method === "POST") {
        const hash = createHash("sha256");
        let n = 0;
        req.on("data", (c: Uint8Array) => {
          n += c.length;
          hash.update(c);
        });
        req.on("end", () => res.end(`${n} ${hash.digest("hex")}`));
        return;
      }
      res.writeHead(200, { "content-length": String(SIZE) });
      let i = 0;
      const pump = () => {
        while (i < SIZE / chunk.length) {
          i++;
          if (!res.write(chunk)) return res.once("drain", pump);
        }
        res.end();
      };
      pump();
    });
    await using s = await setup();
    s.apps["g/blog"] = app.port;
    const dir = await makeTempDir();
    try {
      const common = [
        "--http2",
        "--cacert",
        s.caFile,
        "--resolve",
        `blog.example.test:${s.httpsPort}:127.0.0.1`,
      ];
      const down = await curl([
        ...common,
        "-o",
        `${dir}/down.bin`,
        "-w",
        "%{http_version}",
        `https://blog.example.test:${s.httpsPort}/big`,
      ]);
      assert.equal(down.code, 0, down.err);
      assert.equal(down.out, "2");
      assert.equal(await sha256(await Deno.readFile(`${dir}/down.bin`)), expected);
      await Deno.writeFile(`${dir}/up.bin`, whole);
      const up = await curl([
        ...common,
        "--data-binary",
        `@${dir}/up.bin`,
        `https://blog.example.test:${s.httpsPort}/up`,
      ]);
      assert.equal(up.code, 0, up.err);
      assert.equal(up.out, `${SIZE} ${expected}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
