/**
 * Hostile input never takes the server down: peers that reset before they
 * are accepted, floods of silent handshakes (in total and from one source),
 * control characters meant to forge log lines, malformed requests inside a
 * live session, and stalled TLS handshakes. Then one live server against a
 * sequence of hostile clients (garbage, oversize and truncated frames,
 * slowloris, a thousand wrong tokens, forged work connections, a greedy
 * group, a flood of silent TLS handshakes): a real `client.ts` keeps one
 * echo tunnel open through the whole sequence. After every attack the
 * tunnel must still carry 1 MB byte-exactly, and the server's resident
 * memory must come back within {@linkcode GROWTH_MIB} of the baseline taken
 * after a warm-up (polled: V8 gives memory back lazily).
 *
 * Attackers that must not share the legit client's per-source counters
 * (handshakes in flight, failed logins) come from other loopback addresses
 * (127.0.x.y) through `node:net`, which can bind a source address, wrapped
 * in `node:tls`.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as net from "node:net";
import {
  encodeFrame,
  parseServerMessage,
  PROTOCOL_VERSION,
  type ServerMessage,
} from "../../lib/protocol/protocol.ts";
import { Secret } from "../../mod.ts";
import { newId, prove } from "../../lib/util/secret.ts";
import {
  connectAndReset,
  connectFrom,
  dialControl,
  echoApp,
  echoThrough,
  groupFile,
  portBlock,
  type Proc,
  randomBytes,
  readyPort,
  sha256,
  startClient,
  startServer,
  startTunnel,
  until,
  writeAll,
} from "../helpers/harness.ts";
import {
  closeConn,
  frameOf,
  hangUp,
  helloFor,
  inWaves,
  Link,
  prefixed,
  rawSession,
  rssMiB,
} from "../helpers/raw_peer.ts";
import { sourceRelay } from "../helpers/relays.ts";
import { makeTempFile } from "../helpers/temp.ts";
import { MAX_HANDSHAKES } from "../../lib/server/handshakes.ts";
import { ACCEPT_QUEUE } from "../../lib/transport/tls_listener.ts";

/** The token of the servers each test starts on its own. */
const OWN_TOKEN = "hostile-token-Pw4";

Deno.test("connections reset before accept stop neither the control listener nor a public port", async () => {
  await using tunnel = await startTunnel({ group: "first", token: OWN_TOKEN });
  const { server } = tunnel;
  const port = await tunnel.port("echo");
  for (let i = 0; i < 20; i++) {
    await connectAndReset(server.port);
    await connectAndReset(port);
  }
  await server.proc.stderr.wait(/accept failed: .*not connected/i);
  // The control listener still accepts and registers a new group...
  const second = tunnel.addClient("second");
  const port2 = await readyPort(second, "second", "echo");
  // ...and both public ports still carry bytes exactly.
  for (const p of [port, port2]) {
    const data = randomBytes(200_000);
    assert.equal(await echoThrough(p, data), await sha256(data));
  }
});

Deno.test("a burst of users needs no new work connection: each user is one stream", async () => {
  await using tunnel = await startTunnel({ group: "bursty", token: OWN_TOKEN });
  const { server } = tunnel;
  const port = await tunnel.port("echo");
  const waited = () =>
    server.proc.stderr.all.filter((l) => l.includes("no work connection up")).length;
  // The first user may come before the client's work connections are up.
  const first = randomBytes(1000);
  assert.equal(await echoThrough(port, first), await sha256(first));
  const before = waited();
  const burst = await Promise.all(Array.from({ length: 100 }, async () => {
    const data = randomBytes(2000);
    return (await echoThrough(port, data)) === (await sha256(data));
  }));
  assert.equal(burst.filter((ok) => ok).length, 100);
  for (let i = 0; i < 40; i++) {
    const data = randomBytes(1000);
    assert.equal(await echoThrough(port, data), await sha256(data));
  }
  // v4 drained its pool of 8 here and asked for more on the control connection.
  assert.equal(waited() - before, 0, "users waited for a work connection");
});

Deno.test("a client whose stdout is a closed pipe keeps serving and stops cleanly", async () => {
  await using tunnel = await startTunnel({ group: "piped", token: OWN_TOKEN });
  const { client, server } = tunnel;
  await client.stdout.cancel(); // the reader of stdout is gone: `ready` hits a broken pipe
  const m = await server.proc.stderr.wait(/piped\/echo is live on 127\.0\.0\.1:(\d+)/);
  await client.stderr.wait(/ready callback for piped\/echo failed/);
  const data = randomBytes(100_000);
  assert.equal(await echoThrough(Number(m[1]), data), await sha256(data));
  client.kill("SIGTERM");
  assert.equal(await client.exitCode(3000), 0);
});

Deno.test("a flood of silent handshakes is capped; clients register once it is gone", async () => {
  const app = echoApp();
  const server = await startServer({ token: OWN_TOKEN });
  const flood: Array<{ destroy(): void }> = [];
  let client: ReturnType<typeof startClient> | undefined;
  try {
    // 560 from 20 addresses: under the per-source limit, over the global one.
    for (let i = 0; i < 560; i++) {
      flood.push(await connectFrom(`127.0.1.${1 + (i % 20)}`, server.port));
    }
    await server.proc.stderr.wait(/512 handshakes in flight: turning new connections away/);
    for (const c of flood.splice(0)) c.destroy();
    client = startClient(groupFile({
      server: `127.0.0.1:${server.port}`,
      token: OWN_TOKEN,
      group: "after-flood",
      apps: [{ name: "echo", local: app.addr }],
    }));
    const port = await readyPort(client, "after-flood", "echo");
    const data = randomBytes(10_000);
    assert.equal(await echoThrough(port, data), await sha256(data));
  } finally {
    for (const c of flood) c.destroy();
    await client?.stop();
    await server.proc.stop();
    app.close();
  }
});

Deno.test("one source's flood of handshakes is capped at its own limit; other hosts register meanwhile", async () => {
  const app = echoApp();
  const server = await startServer({ token: OWN_TOKEN });
  const flood: Array<{ destroy(): void }> = [];
  let client: ReturnType<typeof startClient> | undefined;
  try {
    for (let i = 0; i < 100; i++) flood.push(await connectFrom("127.0.2.9", server.port));
    await server.proc.stderr.wait(
      /64 handshakes in flight from 127\.0\.2\.9: turning its new connections away \(limits\.handshakes_per_source\)/,
    );
    // The flood still holds its 64 handshakes; a client from 127.0.0.1 is not held up.
    client = startClient(groupFile({
      server: `127.0.0.1:${server.port}`,
      token: OWN_TOKEN,
      group: "beside-flood",
      apps: [{ name: "echo", local: app.addr }],
    }));
    const port = await readyPort(client, "beside-flood", "echo");
    const data = randomBytes(10_000);
    assert.equal(await echoThrough(port, data), await sha256(data));
  } finally {
    for (const c of flood) c.destroy();
    await client?.stop();
    await server.proc.stop();
    app.close();
  }
});

Deno.test("control characters from peers cannot forge log lines", async () => {
  await using server = await startServer({ token: OWN_TOKEN });
  const { conn } = await rawSession(server.port, new Secret(OWN_TOKEN), "forger", {
    client: "1.0\n2026-01-01T00:00:00Z ERROR   server: FORGED LINE",
    runId: "0".repeat(32),
  });
  conn.close();
  const line = await server.proc.stderr.wait(/group forger connected from .*FORGED LINE/);
  assert.match(
    line.input ?? "",
    /\(burrow 1\.0\\x0a2026-01-01T00:00:00Z ERROR {3}server: FORGED LINE\)$/,
  );
  assert.ok(
    !server.proc.stderr.all.some((l) => l.startsWith("2026-01-01T00:00:00Z")),
    "a forged line",
  );
});

Deno.test("a malformed expose is refused on its own; the session carries on", async () => {
  await using server = await startServer({ token: OWN_TOKEN });
  const { conn, reader, writer } = await rawSession(server.port, new Secret(OWN_TOKEN), "raw", {
    client: "raw",
    runId: "1".repeat(32),
  });
  // maxUsers 0 breaks the schema: sent raw, as an older or hostile client might.
  await writeAll(
    conn,
    encodeFrame({ type: "expose", id: 7, app: "bad", port: 0, limits: { maxUsers: 0 } } as never),
  );
  assert.deepEqual(parseServerMessage(await reader.read(5000)), {
    type: "refused",
    id: 7,
    code: "bad_request",
    message: "malformed expose request",
  });
  await writer.send({ type: "expose", id: 8, app: "good", port: 0 });
  const exposed = parseServerMessage(await reader.read(5000));
  assert.equal(exposed.type, "exposed");
  conn.close();
});

/** The token of the live server the hostile sequence attacks. */
const TOKEN = "hostile-suite-Tk7q";
const SECRET = new Secret(TOKEN);
const WRONG = new Secret("not-the-token-Xb2");
/**
 * Resident memory the server may keep above its baseline after an attack.
 * Measured on 2 cores: about 98 MiB at baseline, at most 38.5 MiB above it
 * after the thousand wrong tokens: each is a TLS handshake, and `node:tls`
 * allocates enough per handshake that V8 grows its young generation to
 * its cap (new_space about 39 MiB, all of it free after a collection, and
 * not given back for a while). The bound catches unbounded buffering (a
 * 0xFFFFFFFF frame taken at its word) and gross leaks, not a few bytes per
 * connection, nor V8's young generation at its (fixed) cap. On the merged
 * main of this round one CI run ended the silent-handshake step at 57 MiB
 * above: native memory (outside V8's heap) that the process keeps after
 * many TLS handshakes, which a 3,000-cycle soak showed levelling off rather
 * than growing. 72 MiB leaves room for that; a frame taken at its word would
 * still blow far past it.
 */
const GROWTH_MIB = 72;
/** From the server file below. */
const AUTH_FAILURES = 5;
// ---- memory ------------------------------------------------------------------

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("hostile clients against one live server: the tunnel carries on and memory comes back", async (t) => {
  const config = await makeTempFile({ prefix: "burrow-hostile-", suffix: ".yaml" });
  await Deno.writeTextFile(
    config,
    `limits:\n  auth_failures: ${AUTH_FAILURES}\n  lockout_seconds: 60\n`,
  );
  // 300 public ports: the live tunnel, the newcomers, and a greedy group's 128.
  const ports = [portBlock(100), portBlock(100), portBlock(100)].map((b) => b.spec).join(",");
  await using tunnel = await startTunnel({
    group: "live",
    token: TOKEN,
    server: { ports, args: ["--config", config] },
  });
  const server = tunnel.server;
  const log = server.proc.stderr;
  const pid = server.proc.pid;
  const livePort = await tunnel.port("echo");
  const suiteStart = performance.now();

  const echo = async (size: number) => {
    const data = randomBytes(size);
    assert.equal(await echoThrough(livePort, data), await sha256(data), "echo mismatch");
  };
  for (let i = 0; i < 3; i++) await echo(1 << 20); // warm-up: JIT, buffers, the work pool
  const baseline = rssMiB(pid);
  const figures: Array<{ step: string; ms: number; after: number; settled: number }> = [
    { step: "baseline", ms: 0, after: baseline, settled: baseline },
  ];

  /** The checks after every attack: 1 MB through the tunnel, then memory back under the bound. */
  const survived = async (step: string, started: number) => {
    await echo(1 << 20);
    const after = rssMiB(pid);
    const deadline = performance.now() + 10_000;
    let settled = after;
    while (settled > baseline + GROWTH_MIB && performance.now() < deadline) {
      await sleep(200);
      settled = rssMiB(pid);
    }
    figures.push({ step, ms: Math.round(performance.now() - started), after, settled });
    assert.ok(
      settled <= baseline + GROWTH_MIB,
      `${step}: server RSS ${settled} MiB, baseline ${baseline} MiB (+${GROWTH_MIB} allowed)`,
    );
  };

  /** Starts a real client for `group` with one echo app, dialling `serverPort`. */
  const newClient = (group: string, serverPort = server.port): Proc =>
    startClient(groupFile({
      server: `127.0.0.1:${serverPort}`,
      token: TOKEN,
      group,
      apps: [{ name: "echo", local: tunnel.app.addr }],
    }));

  try {
    await t.step(
      "1. random bytes: over TLS after the preamble, instead of it, and raw TCP",
      async () => {
        const started = performance.now();
        const kinds = ["tls", "tls-no-preamble", "tcp"] as const;
        const times = await inWaves(180, 24, async (i) => {
          const kind = kinds[i % 3]!;
          const conn = kind === "tcp"
            ? await Deno.connect({ hostname: "127.0.0.1", port: server.port })
            : await dialControl(server.port, { preamble: kind === "tls" });
          const opened = performance.now();
          await writeAll(conn, randomBytes(1024 + (i * 997) % 30_000)).catch(() => {});
          return await hangUp(conn, 7_000, opened);
        });
        const slowest = Math.max(...times);
        // A random length prefix is almost surely over the cap; in the rare case it
        // is not, the handshake deadline (5 s) ends it.
        assert.ok(slowest < 6_500, `a garbage connection was held ${slowest} ms`);
        await log.wait(/closed connection from .*not a burrow client \(bad preamble\)/, 1000);
        await log.wait(/exceeds the 65536-byte cap|not valid UTF-8 JSON/, 1000);
        await survived("1 random bytes (180 conns)", started);
      },
    );

    await t.step("2. oversize frames: cap + 1, 0xFFFFFFFF, and inside a live session", async () => {
      const started = performance.now();
      const from = log.count;
      const times = await inWaves(40, 20, async (i) => {
        const conn = await dialControl(server.port);
        const opened = performance.now();
        const frame = i % 2 === 0
          ? prefixed(64 * 1024 + 1, randomBytes(70_000))
          : prefixed(0xffffffff, randomBytes(1 << 20));
        await writeAll(conn, frame).catch(() => {});
        return await hangUp(conn, 7_000, opened);
      });
      const slowest = Math.max(...times);
      assert.ok(slowest < 3_000, `an oversize frame was not refused at once (${slowest} ms)`);
      await log.wait(/frame of 65537 bytes exceeds the 65536-byte cap/, 1000, from);
      await log.wait(/frame of 4294967295 bytes exceeds the 65536-byte cap/, 1000, from);

      // Authenticated: a frame of exactly the cap is served, one over it ends the session.
      const { conn, reader } = await rawSession(server.port, SECRET, "oversize");
      const ping = { type: "ping", seq: 1, pad: "" };
      ping.pad = "x".repeat(64 * 1024 - frameOf(ping).length + 4);
      const atCap = frameOf(ping);
      assert.equal(atCap.length, 4 + 64 * 1024);
      await writeAll(conn, atCap);
      assert.deepEqual(parseServerMessage(await reader.read(5000)), { type: "pong", seq: 1 });
      await writeAll(conn, prefixed(0xffffffff, randomBytes(100_000))).catch(() => {});
      assert.ok((await hangUp(conn, 3_000)) < 3_000, "the session outlived an oversize frame");
      await log.wait(/group oversize from .* ended: frame of 4294967295 bytes exceeds/, 2000, from);
      await survived("2 oversize (40 conns + 1 session)", started);
    });

    await t.step(
      "3. truncated frames: 10 of 1000 promised bytes, then silence or a close",
      async () => {
        const started = performance.now();
        const from = log.count;
        const truncated = prefixed(1000, randomBytes(10));
        const truncate = (close: boolean) =>
          inWaves(10, 10, async () => {
            const conn = await dialControl(server.port);
            const opened = performance.now();
            await writeAll(conn, truncated);
            if (close) await conn.closeWrite();
            return await hangUp(conn, 9_000, opened);
          });
        const [silent, closing] = await Promise.all([truncate(false), truncate(true)]);
        for (const ms of silent) {
          assert.ok(
            ms >= 4_000 && ms < 7_000,
            `a silent truncated frame was held ${ms} ms, not ~5 s`,
          );
        }
        for (const ms of closing) {
          assert.ok(ms < 2_000, `a truncated frame then FIN was held ${ms} ms`);
        }
        const lines = log.all.slice(from);
        assert.ok(lines.filter((l) => /: no hello within 5s$/.test(l)).length >= 10);
        assert.ok(lines.filter((l) => /: connection closed mid-frame$/.test(l)).length >= 10);
        await survived("3 truncated (20 conns)", started);
      },
    );

    await t.step(
      "4. slowloris: 8 connections sending a hello one byte a second inside TLS",
      async () => {
        const started = performance.now();
        const from = log.count;
        // Inside TLS, after the preamble: a hello trickled a byte a second.
        const inside = Array.from({ length: 8 }, () => new Link("127.0.4.4", server.port));
        const trickle = frameOf({ type: "hello", version: PROTOCOL_VERSION, pad: "x".repeat(50) });
        const feeders = inside.map(async (link) => {
          assert.ok(await link.secured, "the TLS handshake failed");
          for (let i = 0; !link.ended && i < trickle.length; i++) {
            link.write(trickle.subarray(i, i + 1));
            await Promise.race([sleep(1000), link.closed]);
          }
          return await link.closed;
        });
        const times = await Promise.all(feeders);
        for (const ms of times) {
          assert.ok(
            ms >= 4_000 && ms < 7_000,
            `a slowloris connection was held ${ms} ms, not ~5 s`,
          );
        }
        // The server logs each cut before it closes, but its stderr reaches us later than
        // the FIN: wait (bounded) for the lines rather than reading them at once.
        const cutLines = () =>
          log.all.slice(from).filter((l) =>
            /closed connection from 127\.0\.4\.4:\d+: no hello within 5s$/.test(l)
          );
        const cut = await until(cutLines, (lines) => lines.length >= 8, 5_000).catch(cutLines);
        assert.equal(
          cut.length,
          8,
          `${cut.length} slowloris connections logged as cut, not 8; their lines:\n` +
            log.all.slice(from).filter((l) => l.includes("127.0.4.4")).join("\n"),
        );
        await survived("4 slowloris (8 conns)", started);
      },
    );

    await t.step(
      "5. a thousand wrong tokens from one source: lockout, and others unaffected",
      async () => {
        const started = performance.now();
        const from = log.count;
        const source = "127.0.3.3";
        /** One login (or every 10th, a query) with a wrong proof; resolves to the code and ms. */
        const attempt = async (i: number, secret = WRONG) => {
          const link = new Link(source, server.port);
          try {
            const nonce = await link.nonce();
            const t0 = performance.now();
            if (i % 10 === 9) {
              link.send({
                type: "query",
                version: PROTOCOL_VERSION,
                what: "services",
                proof: await prove(secret, nonce, "query", ""),
              });
            } else {
              link.send(await helloFor(secret, nonce, "intruder"));
            }
            const answer = await link.frame(1, 10_000);
            return {
              code: answer?.type === "refused" ? answer.code : answer?.type ?? "closed",
              ms: performance.now() - t0,
            };
          } finally {
            link.destroy();
          }
        };
        // The first ones one after another, so the threshold is exact.
        const first = [];
        for (let i = 0; i < AUTH_FAILURES; i++) first.push(await attempt(i));
        assert.deepEqual(
          first.map((a) => a.code),
          [...Array(AUTH_FAILURES - 1).fill("auth_failed"), "locked_out"],
        );
        assert.ok(first[3]!.ms >= 240, "the 4th failure was answered without a delay");
        await log.wait(
          /locking out 127\.0\.3\.3 for 60s after 5 failed logins \(limits\.auth_failures/,
          1000,
          from,
        );
        // The rest, 50 at a time: every one refused at once.
        const attackStart = performance.now();
        const rest = await inWaves(1000 - AUTH_FAILURES, 50, (i) => attempt(i + AUTH_FAILURES));
        const attackMs = performance.now() - attackStart;
        const codes = new Map<string, number>();
        for (const a of rest) codes.set(a.code, (codes.get(a.code) ?? 0) + 1);
        assert.deepEqual(Object.fromEntries(codes), { locked_out: rest.length });
        const slowest = Math.max(...rest.map((a) => a.ms));
        assert.ok(slowest < 2_000, `a locked-out attempt waited ${slowest} ms for its refusal`);
        assert.ok(attackMs < 25_000, `995 attempts took ${attackMs} ms`);
        assert.equal(log.all.slice(from).filter((l) => l.includes("locking out")).length, 1);
        console.log(
          `  1000 wrong tokens: ${AUTH_FAILURES - 1} auth_failed, ${
            1 + rest.length
          } locked_out; the last ${rest.length} in ${Math.round(attackMs)} ms`,
        );

        // The right token from the locked-out source: refused too, raw and by a real client.
        const right = new Link(source, server.port);
        right.send(await helloFor(SECRET, await right.nonce(), "rightful"));
        const refusal = await right.frame(1);
        right.destroy();
        assert.equal(refusal?.type === "refused" && refusal.code, "locked_out");
        const relay = await sourceRelay(source, server.port);
        try {
          const locked = newClient("rightful", relay.port);
          assert.equal(await locked.exitCode(15_000), 3);
          assert.match(locked.stderr.text, /locked out for \d+s more \(locked_out\)/);
        } finally {
          relay.close();
        }
        // From 127.0.0.1 a new client registers and serves.
        const fresh = newClient("fresh");
        try {
          const port = await readyPort(fresh, "fresh", "echo");
          const data = randomBytes(100_000);
          assert.equal(await echoThrough(port, data), await sha256(data));
        } finally {
          await fresh.stop();
        }
        await survived("5 1000 wrong tokens", started);
      },
    );

    await t.step(
      "6. work connections claiming a session that is not theirs get no users",
      async () => {
        const started = performance.now();
        const from = log.count;
        const source = "127.0.6.6";
        const control = new Link(source, server.port);
        const links = [control];
        using _ = { [Symbol.dispose]: () => links.forEach((l) => l.destroy()) };
        control.send(await helloFor(SECRET, await control.nonce(), "rogue"));
        const welcome = await control.frame(1);
        assert.equal(welcome?.type, "welcome");
        const session = (welcome as Extract<ServerMessage, { type: "welcome" }>).session;
        const work = async (claim: string, secret: Secret) => {
          const link = new Link(source, server.port);
          links.push(link);
          const nonce = await link.nonce();
          link.send({
            type: "work_hello",
            version: PROTOCOL_VERSION,
            session: claim,
            proof: await prove(secret, nonce, "work", claim),
          });
          return link;
        };
        // Its own session, properly proven: pooled for the rogue group only.
        const own = await Promise.all([work(session, SECRET), work(session, SECRET)]);
        const bogus = await Promise.all([
          work(newId(), SECRET), // a session that does not exist
          work(newId(), SECRET),
          work(session, WRONG), // its own session, proven with another token
          work(session, WRONG),
        ]);
        // Users of the live tunnel meanwhile, in parallel.
        await Promise.all(Array.from({ length: 20 }, () => echo(64 * 1024)));
        for (const link of bogus) {
          const ms = await Promise.race([link.closed, sleep(3_000).then(() => Infinity)]);
          assert.ok(ms < 3_000, "a bogus work connection was kept open");
          assert.equal(
            link.frames.length,
            1,
            "a bogus work connection got more than its challenge",
          );
        }
        for (const link of own) {
          assert.ok(!link.ended, "a proven work connection was closed while idle");
          assert.equal(link.frames.length, 1, "a user of another group reached a rogue connection");
        }
        const lines = log.all.slice(from);
        assert.equal(lines.filter((l) => /: (unknown session|wrong proof)$/.test(l)).length, 4);
        assert.ok(!lines.some((l) => l.includes("locking out 127.0.6.6")));
        // The rogue group leaves: its idle work connections go with it.
        control.destroy();
        for (const link of own) {
          const ms = await Promise.race([link.closed, sleep(3_000).then(() => Infinity)]);
          assert.ok(ms < Infinity, "a work connection outlived its session");
        }
        await survived("6 bogus work connections", started);
      },
    );

    await t.step(
      "7. a group that exposes 500 apps gets 128; all are freed when it leaves",
      async () => {
        const started = performance.now();
        const from = log.count;
        using session = await rawSession(server.port, SECRET, "greedy");
        const { conn, reader } = session;
        const burst = Array.from(
          { length: 500 },
          (_, i) => encodeFrame({ type: "expose", id: i + 1, app: `app-${i}`, port: 0 }),
        );
        const all = new Uint8Array(burst.reduce((n, f) => n + f.length, 0));
        burst.reduce((off, f) => (all.set(f, off), off + f.length), 0);
        await writeAll(conn, all);
        const exposed: number[] = [];
        const refused = new Map<string, number>();
        for (let i = 0; i < 500; i++) {
          const answer = parseServerMessage(await reader.read(10_000));
          if (answer.type === "exposed") exposed.push(answer.port);
          else if (answer.type === "refused") {
            refused.set(answer.code, (refused.get(answer.code) ?? 0) + 1);
          } else assert.fail(`unexpected ${answer.type}`);
        }
        assert.equal(exposed.length, 128);
        assert.equal(new Set(exposed).size, 128);
        assert.deepEqual(Object.fromEntries(refused), { quota: 372 });
        await log.wait(/refused greedy\/app-499: a group may expose at most 128 apps/, 1000, from);
        // The server keeps serving meanwhile, and the ports are really open.
        await echo(64 * 1024);
        for (const port of exposed.slice(0, 3)) {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        }
        closeConn(conn);
        await log.wait(/group greedy from .* ended: .*; freed ports /, 5000, from);
        const freed = await Promise.all(exposed.map(async (port) => {
          const deadline = performance.now() + 5_000;
          while (performance.now() < deadline) {
            try {
              (await Deno.connect({ hostname: "127.0.0.1", port })).close();
            } catch (err) {
              if (err instanceof Deno.errors.ConnectionRefused) return true;
            }
            await sleep(50);
          }
          return false;
        }));
        assert.equal(
          freed.filter((f) => f).length,
          128,
          "some of the greedy group's ports stayed open",
        );
        await survived("7 500 exposes", started);
      },
    );

    await t.step(
      "8. 200 silent TLS handshakes from one source: capped; a new client registers meanwhile",
      async () => {
        const started = performance.now();
        const from = log.count;
        const flood = Array.from({ length: 200 }, () => new Link("127.0.8.8", server.port, false));
        using _ = { [Symbol.dispose]: () => flood.forEach((l) => l.destroy()) };
        await log.wait(
          /64 handshakes in flight from 127\.0\.8\.8: turning its new connections away/,
          5_000,
          from,
        );
        const newcomer = newClient("newcomer");
        let readyAt = Infinity;
        try {
          const port = await readyPort(newcomer, "newcomer", "echo");
          readyAt = performance.now() - started;
          const data = randomBytes(100_000);
          assert.equal(await echoThrough(port, data), await sha256(data));
        } finally {
          await newcomer.stop();
        }
        const secured = (await Promise.all(flood.map((l) => l.secured))).filter((s) => s).length;
        const closed = await Promise.all(flood.map((l) => l.closed));
        const challenged = flood.filter((l) => l.frames.length > 0).length;
        // Deno completes the TLS handshake of a connection it closed before the
        // handshake (then closes it), so `secured` may exceed the cap; only the
        // admitted ones get a challenge.
        assert.ok(
          challenged <= 64,
          `${challenged} flood connections got a challenge, over the cap`,
        );
        const slowest = Math.max(...closed);
        assert.ok(slowest < 7_000, `a flood connection was held ${slowest} ms`);
        console.log(
          `  flood: ${secured} of 200 got TLS, ${challenged} a challenge, all cut within ${
            Math.round(slowest)
          } ms; ` +
            `newcomer ready after ${Math.round(readyAt)} ms`,
        );
        assert.ok(
          readyAt < Math.min(...closed.filter((ms) => ms > 4_000)),
          "the newcomer waited out the flood",
        );
        await survived("8 200 silent TLS handshakes", started);
      },
    );
  } finally {
    console.log(`  suite ${Math.round(performance.now() - suiteStart)} ms; server RSS (MiB):`);
    for (const f of figures) {
      console.log(
        `  ${f.step.padEnd(32)} ${
          String(f.ms).padStart(6)
        } ms  after ${f.after}  settled ${f.settled}`,
      );
    }
    await Deno.remove(config);
  }
});

/**
 * A peer that opens TCP and then stalls the TLS handshake (sends nothing, or
 * half a ClientHello) is dropped at the first-frame deadline (5 s) like any
 * silent peer: the server closes its socket, and the peer reads the end (or
 * a reset). With `Deno.listenTls` it could not (closing a connection whose
 * handshake had not finished waited for the handshake: denoland/deno#14547),
 * so such peers held their descriptors for as long as they liked. A flood
 * larger than the handshake cap holds a bounded number of descriptors
 * meanwhile (those in their handshake, plus the listener's accept queue;
 * more are closed at once), and all of them come back once it is cut.
 */
Deno.test("stalled TLS handshakes are cut at the deadline; descriptors stay bounded and come back", async () => {
  const app = echoApp();
  const server = await startServer({ token: TOKEN });
  const fds = () => [...Deno.readDirSync(`/proc/${server.proc.pid}/fd`)].length;
  const sockets: net.Socket[] = [];
  let client: ReturnType<typeof startClient> | undefined;
  try {
    const before = fds();
    // 700 stalled handshakes from 14 sources (50 each, under the per-source
    // limit of 64), over the cap of 512 in flight.
    const started = performance.now();
    const cut: Promise<number>[] = [];
    for (let i = 0; i < 700; i++) {
      const socket = net.connect({
        host: "127.0.0.1",
        port: server.port,
        localAddress: `127.0.9.${1 + (i % 14)}`,
      });
      cut.push(
        new Promise((resolve) => {
          const done = () => resolve(performance.now() - started);
          socket.once("end", done);
          socket.once("close", done);
          socket.once("error", done);
        }),
      );
      if (i % 2) socket.write(new Uint8Array([0x16, 0x03, 0x01, 0x40])); // half a ClientHello
      sockets.push(socket);
    }
    await server.proc.stderr.wait(/512 handshakes in flight: turning new connections away/);
    const held = fds() - before;
    assert.ok(
      held <= MAX_HANDSHAKES + ACCEPT_QUEUE + 16,
      `the server holds ${held} more descriptors (at most ${MAX_HANDSHAKES} + ${ACCEPT_QUEUE})`,
    );
    // Every stalled peer is cut by the server: 5 s for the first 512, 5 s
    // more for those that waited behind them; generous bounds for a loaded
    // machine, but far from the peers' own patience (forever).
    const times = await Promise.race([
      Promise.all(cut),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("stalled TLS peers were not cut within 45 s")), 45_000)
      ),
    ]);
    const earliest = Math.min(...times);
    assert.ok(
      earliest >= 4_000,
      `a stalled peer was cut after ${earliest} ms, before the deadline`,
    );
    // Their descriptors are given back.
    await until(fds, (n) => n <= before + 16, 15_000, "the server's descriptors back to normal");
    // And clients register again.
    client = startClient(groupFile({
      server: `127.0.0.1:${server.port}`,
      token: TOKEN,
      group: "after-stall",
      apps: [{ name: "echo", local: app.addr }],
    }));
    const port = await readyPort(client, "after-stall", "echo");
    const data = randomBytes(100_000);
    assert.equal(await echoThrough(port, data), await sha256(data));
  } finally {
    for (const s of sockets) s.destroy();
    await client?.stop();
    await server.proc.stop();
    app.close();
  }
});
