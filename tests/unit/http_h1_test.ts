/**
 * The edge's HTTP/1.1 client (`lib/http/h1/`): the response head parser and
 * the chunked decoder, by example and fuzzed (fast-check) against a
 * reference encoder; and a connection against a real HTTP server (Deno's)
 * and a raw one that misbehaves.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { parseResponseHead } from "../../lib/http/h1/response_head.ts";
import { ChunkedDecoder, ChunkedError, chunkHeader } from "../../lib/http/h1/chunked.ts";
import { H1Connection, requestHead, UpstreamProtocolError } from "../../lib/http/h1/connection.ts";
import { H1Pool } from "../../lib/http/h1/pool.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function head(text: string, method = "GET") {
  const bytes = enc.encode(text);
  return parseResponseHead(bytes, bytes.length, method);
}

Deno.test("h1: a response head gives status, fields as sent, and the body's framing", () => {
  const r = head("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
  assert.equal(r.kind, "head");
  if (r.kind !== "head") return;
  assert.equal(r.head.status, 200);
  assert.equal(r.head.reason, "OK");
  assert.deepEqual(r.head.rawHeaders, ["Content-Type", "text/plain", "Content-Length", "5"]);
  assert.deepEqual(r.framing, { kind: "length", length: 5 });
  assert.equal(r.size, 64);
  assert.equal(r.head.close, false);
  const chunked = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
  assert.deepEqual(chunked.kind === "head" && chunked.framing, { kind: "chunked" });
  const bare = head("HTTP/1.0 200 OK\r\n\r\n");
  assert.ok(bare.kind === "head" && bare.head.close && bare.framing.kind === "close");
  const kept = head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
  assert.ok(kept.kind === "head" && !kept.head.close);
  const closing = head("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n");
  assert.ok(closing.kind === "head" && closing.head.close);
  for (
    const [text, method] of [
      ["HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", "GET"],
      ["HTTP/1.1 304 Not Modified\r\n\r\n", "GET"],
      ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD"],
      ["HTTP/1.1 100 Continue\r\n\r\n", "POST"],
    ]
  ) {
    const r = head(text as string, method);
    assert.deepEqual(r.kind === "head" && r.framing, { kind: "none" }, text);
  }
  assert.equal(head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n").kind, "incomplete");
});

Deno.test("h1: heads that could smuggle or confuse are refused with a reason", () => {
  const refused: Array<[string, RegExp]> = [
    ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", /both/],
    ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", /Content-Length/],
    ["HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", /Content-Length/],
    ["HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", /Content-Length/],
    ["HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", /Content-Length/],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", /last/],
    ["HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n", /field/],
    ["HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n", /name/],
    ["HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", /bad bytes/],
    ["HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", /LF without CR/],
    ["HTTP/2 200\r\n\r\n", /status line/],
    ["HTTP/1.1 99 Low\r\n\r\n", /status/],
    ["ICY 200 OK\r\n\r\n", /status line/],
  ];
  for (const [text, why] of refused) {
    const r = head(text);
    assert.equal(r.kind, "error", JSON.stringify(text));
    if (r.kind === "error") assert.match(r.message, why, JSON.stringify(text));
  }
  const huge = "HTTP/1.1 200 OK\r\n" + "X-Pad: " + "a".repeat(70_000) + "\r\n\r\n";
  const big = head(huge);
  assert.ok(big.kind === "error" && /over 65536/.test(big.message));
  const many = "HTTP/1.1 200 OK\r\n" + "X-A: 1\r\n".repeat(300) + "\r\n";
  assert.ok(head(many).kind === "error");
});

Deno.test("h1 fuzz: a head arriving in any pieces parses as the whole does; garbage never throws", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/), fc.string({ maxLength: 40 })),
        {
          maxLength: 12,
        },
      ),
      fc.integer({ min: 100, max: 599 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
      (fields, status, cuts) => {
        const text = `HTTP/1.1 ${status} R\r\n` +
          fields.map(([n, v]) => `${n}: ${visible(v)}`)
            .join("\r\n") +
          (fields.length ? "\r\n" : "") + "\r\n";
        const bytes = enc.encode(text);
        const whole = parseResponseHead(bytes, bytes.length, "GET");
        let end = 0;
        let scanned = 0;
        let last = parseResponseHead(bytes, 0, "GET");
        for (const cut of [...cuts, bytes.length]) {
          end = Math.min(bytes.length, end + cut);
          last = parseResponseHead(bytes, end, "GET", undefined, scanned);
          if (last.kind !== "incomplete") break;
          scanned = end;
        }
        assert.deepEqual(last, whole);
      },
    ),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const r = parseResponseHead(bytes, bytes.length, "GET");
      assert.ok(["incomplete", "error", "head"].includes(r.kind));
    }),
    { numRuns: 500 },
  );
});

/** `text` without control characters (a field value's allowed characters, tab aside). */
function visible(text: string): string {
  return [...text].filter((ch) => ch.charCodeAt(0) >= 0x20 && ch.charCodeAt(0) !== 0x7f).join("");
}

/** The chunked coding of `parts`, with optional extensions and trailers. */
function encodeChunked(parts: Uint8Array[], ext: boolean, trailers: string[]): Uint8Array {
  const pieces: Uint8Array[] = [];
  for (const p of parts) {
    if (p.length === 0) continue;
    const h = dec.decode(chunkHeader(p.length)).replace("\r\n", ext ? ";name=val\r\n" : "\r\n");
    pieces.push(enc.encode(h), p, enc.encode("\r\n"));
  }
  pieces.push(enc.encode("0\r\n" + trailers.map((t) => `${t}\r\n`).join("") + "\r\n"));
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function decodeInPieces(bytes: Uint8Array, cuts: number[]): { data: Uint8Array; used: number } {
  const d = new ChunkedDecoder();
  const out: number[] = [];
  let at = 0;
  let used = 0;
  for (const cut of [...cuts, bytes.length]) {
    if (d.done || at >= bytes.length) break;
    const piece = bytes.subarray(at, Math.min(bytes.length, at + cut));
    const n = d.push(piece, (v) => out.push(...v));
    used += n;
    at += piece.length;
  }
  assert.ok(d.done, "the decoder saw the last chunk");
  return { data: new Uint8Array(out), used };
}

Deno.test("h1 fuzz: chunked bodies decode to exactly what was encoded, in any pieces", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
      fc.boolean(),
      fc.array(fc.constantFrom("X-Sum: 1", "Expires: never"), { maxLength: 2 }),
      fc.array(fc.integer({ min: 1, max: 50 }), { maxLength: 40 }),
      fc.uint8Array({ maxLength: 10 }),
      (parts, ext, trailers, cuts, after) => {
        const body = encodeChunked(parts, ext, trailers);
        const stream = new Uint8Array([...body, ...after]);
        const { data, used } = decodeInPieces(stream, cuts);
        const want = new Uint8Array(parts.flatMap((p) => [...p]));
        assert.deepEqual(data, want);
        assert.equal(used, body.length, "bytes after the body are left alone");
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("h1: malformed chunked bodies are errors, never guesses", () => {
  const bad = [
    "5\r\nhello0\r\n\r\n", // no CRLF after data
    "zz\r\n",
    "5\nhello\r\n0\r\n\r\n", // LF without CR
    "-5\r\nhello\r\n",
    "1000000000000\r\n", // 13 hex digits
    " 5\r\nhello\r\n",
    "0\r\nBad Trailer\r\n\r\n",
    "5;ext\x00\r\nhello\r\n",
  ];
  for (const text of bad) {
    const d = new ChunkedDecoder();
    assert.throws(() => d.push(enc.encode(text), () => {}), ChunkedError, JSON.stringify(text));
  }
  const d = new ChunkedDecoder();
  assert.throws(() => d.push(enc.encode("5;" + "x".repeat(5000)), () => {}), /too long/);
});

/** A raw TCP server answering each connection with `answer` (bytes read so far in hand). */
function rawServer(answer: (conn: Deno.TcpConn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    for await (const conn of listener) answer(conn).catch(() => {}).finally(() => conn.close());
  })().catch(() => {});
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await done;
    },
  };
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const out: number[] = [];
  for await (const v of body) out.push(...v);
  return new Uint8Array(out);
}

async function* from(parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p;
}

Deno.test("h1: exchanges with a real HTTP server, kept alive, bodies both ways and chunked", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/echo") return new Response(await req.arrayBuffer());
    if (url.pathname === "/stream") {
      const body = new ReadableStream({
        start(c) {
          for (let i = 0; i < 50; i++) c.enqueue(enc.encode(`part ${i}\n`));
          c.close();
        },
      });
      return new Response(body);
    }
    return new Response(`hello ${req.method} ${req.headers.get("x-n")}`);
  });
  try {
    const stream = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    const conn = new H1Connection(stream);
    for (let n = 0; n < 3; n++) {
      const r = await conn.exchange(
        "GET",
        requestHead("GET", "/", ["host", "app", "x-n", String(n)]),
        { kind: "none" },
      );
      assert.equal(r.head.status, 200);
      assert.equal(dec.decode(await collect(r.body)), `hello GET ${n}`);
      assert.ok(conn.reusable, "kept alive");
    }
    const up = crypto.getRandomValues(new Uint8Array(60_000));
    const posted = await conn.exchange(
      "POST",
      requestHead("POST", "/echo", ["host", "app", "content-length", String(up.length)]),
      {
        kind: "length",
        length: up.length,
        source: from([up.subarray(0, 1000), up.subarray(1000)]),
      },
    );
    assert.deepEqual(await collect(posted.body), up);
    const chunkedUp = await conn.exchange(
      "POST",
      requestHead("POST", "/echo", ["host", "app", "transfer-encoding", "chunked"]),
      { kind: "chunked", source: from([up.subarray(0, 7), up.subarray(7)]) },
    );
    assert.deepEqual(await collect(chunkedUp.body), up);
    const streamed = await conn.exchange("GET", requestHead("GET", "/stream", ["host", "app"]), {
      kind: "none",
    });
    const text = dec.decode(await collect(streamed.body));
    assert.equal(text.split("\n").length, 51);
    assert.equal(conn.exchanges, 6);
    assert.ok(conn.reusable);
    conn.close();
  } finally {
    await server.shutdown();
  }
});

Deno.test("h1: a misbehaving app breaks only its exchange, and its connection is never reused", async () => {
  const cases: Array<[string, RegExp]> = [
    ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", /before the body's end/],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", /inside a chunked body/],
    ["HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", /both/],
    ["HTTP/1.1 200 OK\r\nContent-Le", /before a complete response head/],
  ];
  for (const [answer, why] of cases) {
    await using app = rawServer(async (c) => {
      await c.read(new Uint8Array(4096));
      await c.write(enc.encode(answer));
    });
    const conn = new H1Connection(await Deno.connect({ hostname: "127.0.0.1", port: app.port }));
    const failed = conn.exchange("GET", requestHead("GET", "/", ["host", "a"]), { kind: "none" })
      .then((r) => collect(r.body));
    await assert.rejects(
      failed,
      (err: Error) => err instanceof UpstreamProtocolError && why.test(err.message),
    );
    assert.equal(conn.reusable, false, answer);
  }
  // Two responses for one request: the second is not taken for the next request's answer.
  await using twice = rawServer(async (c) => {
    await c.read(new Uint8Array(4096));
    await c.write(
      enc.encode(
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
      ),
    );
    await c.read(new Uint8Array(4096));
  });
  const conn = new H1Connection(await Deno.connect({ hostname: "127.0.0.1", port: twice.port }));
  const r = await conn.exchange("GET", requestHead("GET", "/", ["host", "a"]), { kind: "none" });
  await collect(r.body);
  assert.equal(conn.reusable, false, "bytes past the response: dropped");
});

Deno.test("h1: interim responses are skipped; an upload longer than its length is not sent on", async () => {
  await using app = rawServer(async (c) => {
    await c.read(new Uint8Array(4096));
    await c.write(
      enc.encode("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"),
    );
    await c.write(enc.encode("HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"));
  });
  const conn = new H1Connection(await Deno.connect({ hostname: "127.0.0.1", port: app.port }));
  const r = await conn.exchange("GET", requestHead("GET", "/", ["host", "a"]), { kind: "none" });
  assert.equal(r.head.status, 201);
  assert.equal(dec.decode(await collect(r.body)), "ok");

  const seen: Uint8Array[] = [];
  await using sink = rawServer(async (c) => {
    const buf = new Uint8Array(4096);
    let n: number | null;
    while ((n = await c.read(buf)) !== null) seen.push(buf.slice(0, n));
  });
  const up = new H1Connection(await Deno.connect({ hostname: "127.0.0.1", port: sink.port }));
  const answer = up.exchange("POST", requestHead("POST", "/", ["content-length", "3"]), {
    kind: "length",
    length: 3,
    source: from([enc.encode("abc"), enc.encode("GET /smuggled HTTP/1.1\r\n\r\n")]),
  });
  await assert.rejects(answer);
  const sent = dec.decode(new Uint8Array(seen.flatMap((s) => [...s])));
  assert.ok(!sent.includes("smuggled"), sent);
});

Deno.test("h1: a request head that could carry a second request is refused", () => {
  assert.throws(() => requestHead("GET", "/a b", []), /request line/);
  assert.throws(() => requestHead("GET", "/\r\nX: y", []), /request line/);
  assert.throws(() => requestHead("G T", "/", []), /request line/);
  assert.throws(() => requestHead("GET", "/", ["x-a", "1\r\nGET /evil HTTP/1.1"]), /x-a/);
  assert.throws(() => requestHead("GET", "/", ["x a", "1"]), /x a/);
  assert.equal(
    requestHead("GET", "/?q=%20", ["Host", "a", "X", "\t1 2"]),
    "GET /?q=%20 HTTP/1.1\r\nHost: a\r\nX: \t1 2\r\n",
  );
});

Deno.test("h1 pool: reuses the most recent idle connection, closes idle ones after idleMs", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("x"),
  );
  const pool = new H1Pool({ idleMs: 200 });
  let dials = 0;
  const dial = async () => {
    dials++;
    return {
      stream: await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
      keep: true,
    };
  };
  try {
    for (let i = 0; i < 3; i++) {
      const { conn, reused } = await pool.take("app", dial);
      assert.equal(reused, i > 0);
      assert.deepEqual(pool.streams((k) => k === "app"), { busy: 1, idle: 0 });
      const r = await conn.exchange("GET", requestHead("GET", "/", ["host", "a"]), {
        kind: "none",
      });
      await collect(r.body);
      pool.release("app", conn);
      assert.deepEqual(pool.streams((k) => k === "app"), { busy: 0, idle: 1 });
    }
    assert.equal(dials, 1);
    const deadline = Date.now() + 5_000;
    while (pool.streams((k) => k === "app").idle > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(pool.streams((k) => k === "app"), { busy: 0, idle: 0 }, "closed after idleMs");
  } finally {
    pool.close();
    await server.shutdown();
  }
});

Deno.test("h1 pool: an idle connection the app ends is dropped at once; a one-shot one is never kept", async () => {
  let conns = 0;
  await using app = rawServer(async (c) => {
    conns++;
    const buf = new Uint8Array(4096);
    await c.read(buf);
    await c.write(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    // and then the app closes the kept-alive connection
  });
  const pool = new H1Pool({ idleMs: 60_000 });
  const dial = async () => ({
    stream: await Deno.connect({ hostname: "127.0.0.1", port: app.port }),
    keep: true,
  });
  try {
    const { conn } = await pool.take("a", dial);
    const r = await conn.exchange("GET", requestHead("GET", "/", ["host", "a"]), { kind: "none" });
    assert.equal(dec.decode(await collect(r.body)), "ok");
    pool.release("a", conn);
    const deadline = Date.now() + 5_000;
    while (pool.streams(() => true).idle > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(pool.streams(() => true).idle, 0, "the ended connection left the pool");
    const next = await pool.take("a", dial);
    assert.equal(next.reused, false);
    const r2 = await next.conn.exchange("GET", requestHead("GET", "/", ["host", "a"]), {
      kind: "none",
    });
    assert.equal(dec.decode(await collect(r2.body)), "ok");
    next.conn.close();
    pool.release("a", next.conn);
    const once = await pool.take("b", async () => ({ ...(await dial()), keep: false }));
    const r3 = await once.conn.exchange("GET", requestHead("GET", "/", ["host", "a"]), {
      kind: "none",
    });
    await collect(r3.body);
    pool.release("b", once.conn);
    assert.deepEqual(pool.streams((k) => k === "b"), { busy: 0, idle: 0 }, "one-shot: not kept");
    assert.equal(conns, 3);
  } finally {
    pool.close();
  }
});
