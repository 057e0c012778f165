/**
 * SNI peeking: real ClientHellos (from node:tls and Deno's rustls) parsed
 * whole, a byte at a time and split across records; non-TLS input refused;
 * random and mutated input never throws; the peek keeps every byte it read.
 */

import assert from "node:assert/strict";
import tls from "node:tls";
import fc from "fast-check";
import { parseClientHello, peekClientHello } from "../../lib/http/sni.ts";
import { fuzz } from "../helpers/fuzz.ts";

/** Captures the first bytes a TLS client sends, until the listener has `min` bytes. */
async function captureHello(connect: (port: number) => void): Promise<Uint8Array> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  connect(listener.addr.port);
  const conn = await listener.accept();
  try {
    const peek = await peekClientHello(conn, 5000);
    assert.ok(peek.ok, peek.ok ? "" : peek.reason);
    return peek.bytes.slice();
  } finally {
    conn.close();
  }
}

function nodeHello(servername: string, alpn: string[]): Promise<Uint8Array> {
  return captureHello((port) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, ALPNProtocols: alpn });
    socket.on("error", () => {});
  });
}

function denoHello(hostname: string, alpn: string[]): Promise<Uint8Array> {
  return captureHello((port) => {
    // Deno sends the hostname as SNI; it resolves to loopback only for localhost
    Deno.connectTls({ hostname, port, alpnProtocols: alpn }).then((c) => c.close(), () => {});
  });
}

/** Re-frames a single-record ClientHello as two records split at `at`. */
function splitRecord(hello: Uint8Array, at: number): Uint8Array {
  const body = hello.subarray(5);
  const a = body.subarray(0, at);
  const b = body.subarray(at);
  const out = new Uint8Array(10 + body.length);
  out.set([0x16, 3, 1, a.length >> 8, a.length & 255], 0);
  out.set(a, 5);
  out.set([0x16, 3, 1, b.length >> 8, b.length & 255], 5 + a.length);
  out.set(b, 10 + a.length);
  return out;
}

Deno.test("a real ClientHello gives its SNI and ALPN, whole, byte by byte and across records", async () => {
  const hellos = [
    {
      bytes: await nodeHello("Blog.Example.test", ["h2", "http/1.1"]),
      name: "blog.example.test",
      alpn: ["h2", "http/1.1"],
    },
    {
      bytes: await denoHello("localhost", ["acme-tls/1"]),
      name: "localhost",
      alpn: ["acme-tls/1"],
    },
  ]; // deno-fmt-ignore
  for (const { bytes, name, alpn } of hellos) {
    assert.deepEqual(parseClientHello(bytes), {
      status: "done",
      hello: { serverName: name, alpn },
    });
    for (let n = 0; n < bytes.length; n++) {
      assert.equal(parseClientHello(bytes.subarray(0, n)).status, "more", `prefix of ${n}`);
    }
    for (const at of [1, 3, 4, 40, bytes.length - 6]) {
      const split = splitRecord(bytes, at);
      assert.deepEqual(parseClientHello(split), parseClientHello(bytes), `split at ${at}`);
    }
  }
});

Deno.test("a ClientHello without SNI parses with no name", async () => {
  const bytes = await captureHello((port) => {
    const socket = tls.connect({ host: "127.0.0.1", port }); // an IP: no SNI is sent
    socket.on("error", () => {});
  });
  const parsed = parseClientHello(bytes);
  assert.equal(parsed.status, "done");
  assert.equal(parsed.status === "done" && parsed.hello.serverName, undefined);
});

Deno.test("anything but a ClientHello is invalid", () => {
  const text = new TextEncoder();
  assert.equal(parseClientHello(text.encode("GET / HTTP/1.1\r\n\r\n")).status, "invalid");
  assert.equal(parseClientHello(new Uint8Array([0x16, 2, 0, 0, 5, 1])).status, "invalid");
  assert.equal(parseClientHello(new Uint8Array([0x16, 3, 1, 0, 0])).status, "invalid");
  // a ServerHello (type 2)
  assert.equal(parseClientHello(new Uint8Array([0x16, 3, 3, 0, 4, 2, 0, 0, 0])).status, "invalid");
  // a hello claiming 16 MiB
  assert.equal(
    parseClientHello(new Uint8Array([0x16, 3, 1, 0, 4, 1, 0xff, 0, 0])).status,
    "invalid",
  );
});

Deno.test("random and mutated input never throws, and a mutated name is never read past its bounds", async () => {
  const real = await nodeHello("fuzz.example.test", ["h2"]);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      const r = parseClientHello(bytes);
      assert.ok(["more", "invalid", "done"].includes(r.status));
    }),
    fuzz(3000),
  );
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(real.length - 1), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 8,
      }),
      (edits) => {
        const bytes = real.slice();
        for (const [at, value] of edits) bytes[at] = value;
        const r = parseClientHello(bytes);
        if (r.status === "done" && r.hello.serverName !== undefined) {
          assert.match(r.hello.serverName, /^[\x21-\x7e]{1,253}$/);
        }
      },
    ),
    fuzz(3000),
  );
});

Deno.test("peekClientHello times out on a silent client and keeps the bytes it read", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const conn = await listener.accept();
  try {
    await client.write(new Uint8Array([0x16, 3, 1]));
    const started = Date.now();
    const peek = await peekClientHello(conn, 300);
    assert.equal(peek.ok, false);
    assert.equal(!peek.ok && peek.reason, "no ClientHello in time");
    assert.deepEqual([...peek.bytes], [0x16, 3, 1]);
    assert.ok(Date.now() - started >= 250);
    client.close();
    const closed = await peekClientHello(conn, 5000);
    assert.equal(!closed.ok && closed.reason, "closed before the ClientHello");
  } finally {
    conn.close();
  }
});
