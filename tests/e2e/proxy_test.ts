/**
 * A client that reaches its server through a proxy, with real processes:
 * tinyproxy (HTTP CONNECT, basic credentials) and microsocks (SOCKS5,
 * username/password). The proxies connect out from 127.0.0.5, so the
 * server's own log shows the client came through them. TLS runs on top as
 * usual (the server's CA is trusted on first use through the tunnel). A
 * proxy that asks for credentials, rejects them or is not there is named in
 * one log line per attempt, its password masked, and the client retries as
 * for an unreachable server until the proxy is there.
 */

import assert from "node:assert/strict";
import { ConfigError, startClient as startLibraryClient } from "../../mod.ts";
import {
  echoApp,
  groupFile,
  Proc,
  randomBytes,
  readAll,
  readyPort,
  sha256,
  startClient,
  startServer,
  writeAll,
} from "../helpers/harness.ts";
import { freePort, missing, startMicrosocks, startTinyproxy } from "../helpers/third_party.ts";

const TOKEN = "e2e-proxy-token-5c1e";
const PASSWORD = "pr0xy-Pa55-9d2b";
/** Where the proxies connect from, so the server can tell them from a direct client. */
const OUTGOING = "127.0.0.5";
const skipped = (why: string | undefined) => why ? ` (skipped: ${why})` : "";

/** Stops `proc` and checks that nothing it printed holds the proxy's password. */
async function stopClean(proc: Proc): Promise<void> {
  await proc.stop();
  const all = proc.stdout.text + proc.stderr.text;
  assert.ok(!all.includes(PASSWORD), "the client printed the proxy's password");
}

/** A server, a client whose group file says `proxy` (or not), and an echo app behind it. */
async function throughProxy(
  group: string,
  o: { proxy?: string; args?: string[]; env?: Record<string, string> },
) {
  const app = echoApp();
  const server = await startServer({ token: TOKEN });
  const client = startClient(
    groupFile({
      server: `127.0.0.1:${server.port}`,
      token: TOKEN,
      group,
      ...(o.proxy === undefined ? {} : { proxy: o.proxy }),
      apps: [{ name: "echo", local: app.addr }],
    }),
    o.args ?? [],
    o.env ?? {},
  );
  return {
    server,
    client,
    async [Symbol.asyncDispose]() {
      await stopClean(client);
      await server.proc.stop();
      app.close();
    },
  };
}

/**
 * `data` through the echo app behind public `port`, read back to its length
 * without a half-close: HTTP CONNECT and SOCKS5 proxies (tinyproxy and
 * microsocks both) end a tunnel at its first FIN, whichever way it goes.
 */
async function echoed(port: number, data: Uint8Array<ArrayBuffer>): Promise<string> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const [, back] = await Promise.all([writeAll(conn, data), readAll(conn, data.length)]);
  return await sha256(back as Uint8Array<ArrayBuffer>);
}

/** The tunnel carries 1 MiB exactly, on a control connection that came through the proxy. */
async function assertThrough(t: Awaited<ReturnType<typeof throughProxy>>, group: string) {
  const port = await readyPort(t.client, group, "echo", 0, 30_000);
  const data = randomBytes(1024 * 1024);
  assert.equal(await echoed(port, data), await sha256(data));
  await t.server.proc.stderr.wait(new RegExp(`group ${group} connected from 127\\.0\\.0\\.5:\\d+`));
}

const tinyproxyMissing = missing("tinyproxy");
const microsocksMissing = missing("microsocks");

Deno.test({
  name: `a client behind tinyproxy (HTTP CONNECT, basic credentials in the group file)${
    skipped(tinyproxyMissing)
  }`,
  ignore: tinyproxyMissing !== undefined,
  async fn() {
    await using proxy = await startTinyproxy({ user: "alice", pass: PASSWORD }, {
      outgoing: OUTGOING,
    });
    await using t = await throughProxy("office", {
      proxy: `http://alice:${PASSWORD}@127.0.0.1:${proxy.port}`,
    });
    await assertThrough(t, "office");
    await t.client.stderr.wait(/reaching the server through the proxy http:\/\/alice:\*\*\*@/);
    // Control, TLS peek and work connections: every one a CONNECT of its own.
    await stopClean(t.client);
    const served = (await proxy.stopAndReadOutput()).match(/Established connection to host/g);
    assert.ok((served?.length ?? 0) >= 3, `tinyproxy served ${served?.length ?? 0} CONNECTs`);
  },
});

Deno.test({
  name: `a client behind microsocks (SOCKS5, username/password) via BURROW_PROXY and --proxy${
    skipped(microsocksMissing)
  }`,
  ignore: microsocksMissing !== undefined,
  async fn() {
    await using proxy = await startMicrosocks({ user: "bob", pass: PASSWORD }, {
      outgoing: OUTGOING,
    });
    const url = `socks5://bob:${PASSWORD}@127.0.0.1:${proxy.port}`;
    {
      await using t = await throughProxy("socks-env", { env: { BURROW_PROXY: url } });
      await assertThrough(t, "socks-env");
      // Discovery goes through the proxy too.
      await using discovery = new Proc("client.ts", [
        "--services",
        "--server",
        `127.0.0.1:${t.server.port}`,
        "--token",
        TOKEN,
        "--proxy",
        url,
      ]);
      assert.equal(await discovery.exitCode(), 0, discovery.stderr.text);
      assert.match(discovery.stdout.text, /^socks-env\s+echo\s/m);
      await t.server.proc.stderr.wait(/answered a services query from 127\.0\.0\.5:\d+/);
    }
    {
      // --proxy wins over the file's proxy (a dead one here).
      await using t = await throughProxy("socks-flag", {
        proxy: `socks5://127.0.0.1:${freePort()}`,
        args: ["--proxy", url],
      });
      await assertThrough(t, "socks-flag");
    }
  },
});

Deno.test({
  name: `a proxy that wants credentials, rejects them, or is not there: named, retried${
    skipped(tinyproxyMissing ?? microsocksMissing)
  }`,
  ignore: tinyproxyMissing !== undefined || microsocksMissing !== undefined,
  async fn() {
    await using strict = await startTinyproxy({ user: "alice", pass: PASSWORD });
    {
      await using t = await throughProxy("no-creds", { proxy: `http://127.0.0.1:${strict.port}` });
      const line = new RegExp(
        `cannot reach server 127\\.0\\.0\\.1:${t.server.port}: the proxy http://127\\.0\\.0\\.1:` +
          `${strict.port} asks for credentials \\(407 [^)]*\\): give them as ` +
          `http://USER:PASS@HOST:PORT; retrying in`,
      );
      const first = await t.client.stderr.wait(line, 15_000);
      await t.client.stderr.wait(line, 15_000, t.client.stderr.all.indexOf(first.input!) + 1);
    }
    {
      await using t = await throughProxy("bad-creds", {
        proxy: `http://alice:wrong-${PASSWORD}@127.0.0.1:${strict.port}`,
      });
      await t.client.stderr.wait(
        /cannot reach server [\d.:]+: the proxy http:\/\/alice:\*\*\*@127\.0\.0\.1:\d+ rejected the credentials .*; retrying in/,
      );
    }
    // Nothing listens where the proxy should be: retried until it is there.
    const port = freePort();
    await using t = await throughProxy("proxy-later", {
      proxy: `socks5://bob:${PASSWORD}@127.0.0.1:${port}`,
    });
    const line = new RegExp(
      `cannot reach server [\\d.:]+: cannot reach the proxy socks5://bob:\\*\\*\\*@127\\.0\\.0\\.1:${port}: connection refused; retrying in`,
    );
    const first = await t.client.stderr.wait(line, 15_000);
    await t.client.stderr.wait(line, 15_000, t.client.stderr.all.indexOf(first.input!) + 1);
    assert.ok(!t.client.stdout.text.includes("ready"), "ready without a proxy");
    await using _late = await startMicrosocks({ user: "bob", pass: PASSWORD }, {
      port,
      outgoing: OUTGOING,
    });
    await assertThrough(t, "proxy-later");
  },
});

Deno.test("a bad proxy URL is a usage error naming the flag, the variable or the option", async () => {
  const file = groupFile({
    server: "127.0.0.1:1",
    token: TOKEN,
    group: "bad-proxy",
    apps: [{ name: "a", local: "127.0.0.1:9" }],
  });
  await using flag = startClient(file, ["--proxy", `https://bob:${PASSWORD}@proxy:3128`]);
  assert.equal(await flag.exitCode(), 2);
  assert.match(
    flag.stderr.text,
    /--proxy: proxy scheme "https" is not supported in "https:\/\/\*\*\*@proxy:3128"/,
  );
  await using env = startClient(file, [], { BURROW_PROXY: `socks5://bob:${PASSWORD}@proxy` });
  assert.equal(await env.exitCode(), 2);
  assert.match(env.stderr.text, /BURROW_PROXY: "socks5:\/\/\*\*\*@proxy" has no port: add :PORT/);
  for (const p of [flag, env]) assert.ok(!p.stderr.text.includes(PASSWORD), p.stderr.text);
  // The library says the same, naming its option.
  await assert.rejects(
    startLibraryClient({ server: "127.0.0.1:1", token: TOKEN, group: "lib", proxy: "socks5://h" }),
    (err: unknown) =>
      err instanceof ConfigError && err.message === `proxy: "socks5://h" has no port: add :PORT`,
  );
});
