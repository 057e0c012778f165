/**
 * Dialling through real proxies (lib/transport/proxy_dial.ts): tinyproxy for
 * HTTP CONNECT and microsocks for SOCKS5, each with and without credentials,
 * started on free ports. Bytes are checked exactly (sha256) both ways, TLS
 * is started on the tunnel, and every failure (refused, credentials asked
 * for or rejected, unreachable, silent, not a proxy of that kind) is a typed
 * `ProxyError` naming the proxy with its password masked. A few replies no
 * real proxy sends on demand (an oversize header, target bytes glued to the
 * reply) come from a scripted peer.
 */

import assert from "node:assert/strict";
import {
  dialViaProxy,
  MAX_REPLY_HEADER_BYTES,
  type ProxyError,
  type ProxyFailure,
} from "../../lib/transport/proxy_dial.ts";
import { parseProxyUrl, type ProxyConfig } from "../../lib/transport/proxy_url.ts";
import { echoApp, randomBytes, readAll, sha256, writeAll } from "../helpers/harness.ts";
import { makeOwnPki } from "../helpers/pki.ts";
import { freePort, missing, startMicrosocks, startTinyproxy } from "../helpers/third_party.ts";

const PASSWORD = "s3cret-Pa55";
const TIMEOUT_MS = 10_000;

function proxyAt(url: string): ProxyConfig {
  const p = parseProxyUrl(url);
  if (typeof p === "string") throw new Error(p);
  return p;
}

/** Sends 1 MiB through `conn` to an echo service and checks every byte came back. */
async function roundTrip(conn: Deno.Conn, early: Uint8Array = new Uint8Array()): Promise<void> {
  const data = randomBytes(1024 * 1024);
  const [, back] = await Promise.all([writeAll(conn, data), readAll(conn, data.length)]);
  assert.equal(early.length, 0);
  assert.equal(await sha256(back as Uint8Array<ArrayBuffer>), await sha256(data));
}

/** The `ProxyError` that dialling rejects with; checks the password is never in it. */
async function failure(
  proxy: ProxyConfig,
  target: { hostname: string; port: number },
  code: ProxyFailure,
  message: RegExp,
  timeoutMs = TIMEOUT_MS,
): Promise<ProxyError> {
  const err = await dialViaProxy(proxy, target, timeoutMs).then(
    ({ conn }) => {
      conn.close();
      throw new Error(`dialling through ${proxy.display} succeeded`);
    },
    (e: unknown) => e as ProxyError,
  );
  assert.equal(err.name, "ProxyError", String(err));
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  assert.equal(err.proxy, proxy.display);
  assert.ok(err.message.includes(proxy.display), err.message);
  assert.ok(!err.message.includes(PASSWORD), err.message);
  return err;
}

const tinyproxyMissing = missing("tinyproxy");
const microsocksMissing = missing("microsocks");
const skipped = (why: string | undefined) => why ? ` (skipped: ${why})` : "";

Deno.test({
  name: `HTTP CONNECT through tinyproxy: open and with basic credentials${
    skipped(tinyproxyMissing)
  }`,
  ignore: tinyproxyMissing !== undefined,
  async fn() {
    const echo = echoApp();
    try {
      await using open = await startTinyproxy();
      await using closed = await startTinyproxy({ user: "alice", pass: PASSWORD });
      const target = { hostname: "127.0.0.1", port: echo.port };
      for (
        const url of [
          `http://127.0.0.1:${open.port}`,
          `http://alice:${PASSWORD}@127.0.0.1:${closed.port}`,
        ]
      ) {
        const { conn, early } = await dialViaProxy(proxyAt(url), target, TIMEOUT_MS);
        try {
          await roundTrip(conn, early);
        } finally {
          conn.close();
        }
      }
      // The proxy resolves a name it is given.
      const { conn } = await dialViaProxy(
        proxyAt(`http://127.0.0.1:${open.port}`),
        { hostname: "localhost", port: echo.port },
        TIMEOUT_MS,
      );
      conn.close();
      // No credentials, and wrong ones.
      await failure(
        proxyAt(`http://127.0.0.1:${closed.port}`),
        target,
        "needs_credentials",
        /asks for credentials \(407 .*\): give them as http:\/\/USER:PASS@HOST:PORT/,
      );
      await failure(
        proxyAt(`http://alice:wrong-${PASSWORD}@127.0.0.1:${closed.port}`),
        target,
        "auth_rejected",
        /^the proxy http:\/\/alice:\*\*\*@127\.0\.0\.1:\d+ rejected the credentials \(40[17] /,
      );
      // A target nobody listens on: the proxy refuses, and says why.
      const dead = { hostname: "127.0.0.1", port: freePort() };
      await failure(
        proxyAt(`http://127.0.0.1:${open.port}`),
        dead,
        "refused",
        new RegExp(`refused to connect to 127\\.0\\.0\\.1:${dead.port}: 5\\d\\d `),
      );
    } finally {
      echo.close();
    }
  },
});

Deno.test({
  name: `SOCKS5 through microsocks: no authentication and username/password${
    skipped(microsocksMissing)
  }`,
  ignore: microsocksMissing !== undefined,
  async fn() {
    const echo = echoApp();
    try {
      await using open = await startMicrosocks();
      await using closed = await startMicrosocks({ user: "bob", pass: PASSWORD });
      // By IPv4 address, and by name (the proxy resolves it).
      for (
        const [url, hostname] of [
          [`socks5://127.0.0.1:${open.port}`, "127.0.0.1"],
          [`socks5://127.0.0.1:${open.port}`, "localhost"],
          [`socks5://bob:${PASSWORD}@127.0.0.1:${closed.port}`, "127.0.0.1"],
        ] as const
      ) {
        const { conn, early } = await dialViaProxy(
          proxyAt(url),
          { hostname, port: echo.port },
          TIMEOUT_MS,
        );
        try {
          await roundTrip(conn, early);
        } finally {
          conn.close();
        }
      }
      const target = { hostname: "127.0.0.1", port: echo.port };
      await failure(
        proxyAt(`socks5://127.0.0.1:${closed.port}`),
        target,
        "needs_credentials",
        /asks for credentials: give them as socks5:\/\/USER:PASS@HOST:PORT/,
      );
      await failure(
        proxyAt(`socks5://bob:wrong-${PASSWORD}@127.0.0.1:${closed.port}`),
        target,
        "auth_rejected",
        /^the proxy socks5:\/\/bob:\*\*\*@127\.0\.0\.1:\d+ rejected the credentials/,
      );
      const dead = { hostname: "127.0.0.1", port: freePort() };
      await failure(
        proxyAt(`socks5://127.0.0.1:${open.port}`),
        dead,
        "refused",
        new RegExp(
          `refused to connect to 127\\.0\\.0\\.1:${dead.port}: connection refused \\(reply 5\\)`,
        ),
      );
    } finally {
      echo.close();
    }
  },
});

Deno.test({
  name: `TLS starts on a tunnel through either proxy, verified against its CA${
    skipped(tinyproxyMissing ?? microsocksMissing)
  }`,
  ignore: tinyproxyMissing !== undefined || microsocksMissing !== undefined,
  async fn() {
    const pki = await makeOwnPki("proxy test CA");
    using listener = Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: pki.leafPem,
      key: pki.leafKeyPem,
    });
    const served = (async () => {
      for await (const conn of listener) {
        (async () => {
          const buf = new Uint8Array(64 * 1024);
          for (let n; (n = await conn.read(buf)) !== null;) {
            await writeAll(conn, buf.subarray(0, n));
          }
        })().catch(() => {}).finally(() => conn.close());
      }
    })().catch(() => {});
    await using http = await startTinyproxy();
    await using socks = await startMicrosocks();
    const target = { hostname: "127.0.0.1", port: listener.addr.port };
    for (const url of [`http://127.0.0.1:${http.port}`, `socks5://127.0.0.1:${socks.port}`]) {
      const { conn, early } = await dialViaProxy(proxyAt(url), target, TIMEOUT_MS);
      const tls = await Deno.startTls(conn, { hostname: "127.0.0.1", caCerts: [pki.caPem] });
      try {
        await tls.handshake();
        await roundTrip(tls, early);
      } finally {
        tls.close();
      }
    }
    listener.close();
    await served;
  },
});

Deno.test("an unreachable proxy and a silent one", async () => {
  const target = { hostname: "127.0.0.1", port: 7 };
  const nobody = freePort();
  await failure(
    proxyAt(`http://alice:${PASSWORD}@127.0.0.1:${nobody}`),
    target,
    "unreachable",
    /^cannot reach the proxy http:\/\/alice:\*\*\*@127\.0\.0\.1:\d+: connection refused$/,
  );
  // A proxy that accepts and never answers: bounded by the timeout, not left hanging.
  using silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of silent) held.push(c);
  })().catch(() => {});
  try {
    for (const scheme of ["http", "socks5"]) {
      const started = Date.now();
      await failure(
        proxyAt(`${scheme}://127.0.0.1:${silent.addr.port}`),
        target,
        "timeout",
        /did not connect to 127\.0\.0\.1:7 within 0\.3s/,
        300,
      );
      assert.ok(Date.now() - started < 5_000, "the timeout held");
    }
  } finally {
    silent.close();
    for (const c of held) c.close();
    await accepting;
  }
});

Deno.test({
  name: `a proxy URL of the wrong kind says so${skipped(microsocksMissing)}`,
  ignore: microsocksMissing !== undefined,
  async fn() {
    await using socks = await startMicrosocks();
    await failure(
      proxyAt(`http://127.0.0.1:${socks.port}`),
      { hostname: "127.0.0.1", port: 7 },
      "protocol",
      /answered in SOCKS5: write its URL as socks5:\/\//,
    );
  },
});

/**
 * A peer on a free port that answers every connection's first bytes with all
 * of `reply` at once (SOCKS5 replies are read exactly, so later steps find
 * their bytes waiting), then closes.
 */
function scripted(reply: Uint8Array): { port: number } & Disposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        await conn.read(new Uint8Array(1024));
        await writeAll(conn, reply);
        await new Promise((resolve) => setTimeout(resolve, 50));
      })().catch(() => {}).finally(() => conn.close());
    }
  })().catch(() => {});
  return { port: listener.addr.port, [Symbol.dispose]: () => listener.close() };
}

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("HTTP replies no real proxy sends on demand: early bytes, oversize, garbage, cut short", async () => {
  const target = { hostname: "127.0.0.1", port: 7 };
  {
    using peer = scripted(bytes("HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\nhello"));
    const { conn, early } = await dialViaProxy(
      proxyAt(`http://127.0.0.1:${peer.port}`),
      target,
      TIMEOUT_MS,
    );
    conn.close();
    assert.equal(new TextDecoder().decode(early), "hello");
  }
  {
    using peer = scripted(
      bytes(`HTTP/1.1 200 OK\r\nX: ${"a".repeat(MAX_REPLY_HEADER_BYTES)}\r\n\r\n`),
    );
    await failure(
      proxyAt(`http://127.0.0.1:${peer.port}`),
      target,
      "protocol",
      /reply header over 16384 bytes/,
    );
  }
  {
    using peer = scripted(bytes("SSH-2.0-OpenSSH_9.2\r\n\r\n"));
    await failure(
      proxyAt(`http://127.0.0.1:${peer.port}`),
      target,
      "protocol",
      /did not answer as an HTTP proxy: "SSH-2\.0-OpenSSH_9\.2"/,
    );
  }
  {
    using peer = scripted(bytes("HTTP/1.1 200 OK\r\nVia"));
    await failure(
      proxyAt(`http://127.0.0.1:${peer.port}`),
      target,
      "protocol",
      /in the middle of its reply/,
    );
  }
  {
    using peer = scripted(bytes("HTTP/1.0 403 Forbidden\r\n\r\n"));
    await failure(
      proxyAt(`http://127.0.0.1:${peer.port}`),
      target,
      "refused",
      /refused to connect to 127\.0\.0\.1:7: 403 Forbidden$/,
    );
  }
});

Deno.test("SOCKS5 replies no real proxy sends on demand: wrong version, refusal codes, cut short", async () => {
  const target = { hostname: "example.invalid", port: 443 };
  {
    using peer = scripted(Uint8Array.of(4, 0));
    await failure(proxyAt(`socks5://127.0.0.1:${peer.port}`), target, "protocol", /version byte 4/);
  }
  {
    using peer = scripted(Uint8Array.of(5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0));
    await failure(
      proxyAt(`socks5://127.0.0.1:${peer.port}`),
      target,
      "refused",
      /refused to connect to example\.invalid:443: connection not allowed by ruleset \(reply 2\)/,
    );
  }
  {
    using peer = scripted(Uint8Array.of(5, 0, 5, 0, 0));
    await failure(
      proxyAt(`socks5://127.0.0.1:${peer.port}`),
      target,
      "protocol",
      /in the middle of the SOCKS5 handshake/,
    );
  }
  {
    using peer = scripted(Uint8Array.of(5, 2));
    await failure(
      proxyAt(`socks5://127.0.0.1:${peer.port}`),
      target,
      "needs_credentials",
      /asks for credentials/,
    );
  }
});
