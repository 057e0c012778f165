/**
 * Bodies streamed through the real programs (edge, tunnel, client): 1 GiB
 * down by `Content-Length` and 1 GiB up chunked, plus 64 MiB the other way
 * round of each, every byte checked by sha256 on both ends. Neither side
 * holds a body: the app writes with backpressure, the test reads as it goes.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { randomBytes, startClient } from "../helpers/harness.ts";
import { httpApp, streamRequest, writeRepeated } from "../helpers/http.ts";
import { webGroupFile, webReady, webServer } from "../helpers/web_server.ts";

const GIB = 1024 * 1024 * 1024;
const MIB = 1024 * 1024;

Deno.test("1 GiB down and up through the tunnel with sha256 checks, by length and chunked", async () => {
  const pattern = randomBytes(MIB);
  const sentDown = new Map<string, string>();
  await using app = await httpApp((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (req.method === "POST") {
      const hash = createHash("sha256");
      let n = 0;
      req.on("data", (c: Uint8Array) => {
        n += c.length;
        hash.update(c);
      });
      req.on("end", () => {
        const te = req.headers["transfer-encoding"] ?? null;
        res.end(JSON.stringify({ n, sha: hash.digest("hex"), te }));
      });
      return;
    }
    const size = Number(url.searchParams.get("size"));
    const chunked = url.searchParams.has("chunked");
    res.writeHead(200, chunked ? {} : { "content-length": String(size) });
    const hash = createHash("sha256");
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        sent += pattern.length;
        hash.update(pattern);
        if (!res.write(pattern)) return res.once("drain", pump);
      }
      sentDown.set(url.search, hash.digest("hex"));
      res.end();
    };
    pump();
  });
  await using s = await webServer();
  await using client = startClient(webGroupFile(
    s.port,
    "lab",
    `  - name: big\n    type: http\n    local: 127.0.0.1:${app.port}\n    subdomain: big\n`,
  ));
  await webReady(client, "lab", "big");

  for (const [size, chunked] of [[GIB, false], [64 * MIB, true]] as const) {
    const search = `?size=${size}${chunked ? "&chunked" : ""}`;
    const started = performance.now();
    const res = await streamRequest(s.httpPort, "big.tunnel.test", { path: `/${search}` });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers["transfer-encoding"], chunked ? "chunked" : undefined);
    if (!chunked) assert.equal(res.headers["content-length"], String(size));
    const hash = createHash("sha256");
    let n = 0;
    for await (const chunk of res) {
      n += chunk.length;
      hash.update(chunk);
    }
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `down ${size / MIB} MiB ${chunked ? "chunked" : "by length"}: ${seconds.toFixed(1)} s`,
    );
    assert.equal(n, size);
    assert.equal(hash.digest("hex"), sentDown.get(search));
  }

  for (const [size, withLength] of [[GIB, false], [64 * MIB, true]] as const) {
    const hash = createHash("sha256");
    const started = performance.now();
    const res = await streamRequest(s.httpPort, "big.tunnel.test", {
      method: "POST",
      path: "/up",
      headers: withLength ? { "content-length": String(size) } : {},
      body: async (req) => {
        for (let i = 0; i < size / pattern.length; i++) hash.update(pattern);
        await writeRepeated(req, pattern, size / pattern.length);
      },
    });
    let text = "";
    for await (const chunk of res) text += chunk;
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `up ${size / MIB} MiB ${withLength ? "by length" : "chunked"}: ${seconds.toFixed(1)} s`,
    );
    const got = JSON.parse(text);
    assert.equal(res.statusCode, 200);
    assert.equal(got.n, size);
    assert.equal(got.sha, hash.digest("hex"));
    assert.equal(got.te, withLength ? null : "chunked");
  }
  // Neither body was held whole: the server's peak resident memory stays below 1 GiB (about 330 MiB measured).
  const status = await Deno.readTextFile(`/proc/${s.proc.pid}/status`);
  const peakKib = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]);
  console.log(`server peak RSS: ${(peakKib / 1024).toFixed(0)} MiB`);
  assert.ok(peakKib > 0 && peakKib < 768 * 1024, `server peak RSS ${peakKib} KiB`);
});
