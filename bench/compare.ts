/**
 * burrow side by side with its peers, in one run on this machine: direct,
 * burrow with TLS (the default), burrow `--no-tls`, and rathole and bore when
 * their binaries are found (see `paths.ts`). Every path exposes the same
 * local services (the sink's echo, discard and source, and a real
 * `redis-server` when Debian's is installed) and goes through the same
 * phases:
 *
 * 1. bulk: one stream up and one down, Gbit/s (median of the repetitions);
 * 2. latency: sequential connect + 1-byte echo, p50 and p99;
 * 3. held: 4000 idle echo connections at once (1000 with --quick), the
 *    tunnel's memory per connection (its processes' RSS with all of them
 *    held, less with the first half held, over the second half: the cost of
 *    one more), in three rounds, the largest counting (later rounds reuse
 *    memory the first freed);
 * 4. redis-benchmark through the tunnel: a new connection per request (20 at
 *    once) and 50 kept-alive connections, requests per second;
 * 5. a long link: the tunnel's client reaches its server through a relay
 *    that adds `--delay-ms` (25) each way, and 100 users arrive at once: the
 *    slowest user's time to first byte;
 * 6. burrow only: a soak of clients connecting and leaving again and again,
 *    with the server's RSS before and after.
 *
 * A seventh row is no tunnel: `floor`, two bare Deno relays in a row
 * (`floor_relay.ts`), the least two JavaScript hops cost on this machine, so
 * that what burrow adds over its runtime can be told from the runtime.
 *
 * It prints one table with ratios to direct and to the best peer, and the
 * issue's targets, and writes `bench-compare.json`. Every step is bounded;
 * the whole run ends itself after `WATCHDOG_MS`.
 *
 * Run: `deno run -A bench/compare.ts [--quick] [--only NAME,...] [--delay-ms N]
 * [--soak-cycles N]`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Child, readProc } from "./child.ts";
import { download, hold, latency, percentile, upload } from "./phases.ts";
import { startDelayRelay } from "./delay_relay.ts";
import {
  borePath,
  burrowPath,
  directPath,
  findBinary,
  floorPath,
  freePort,
  type Path,
  ratholePath,
  type Services,
} from "./paths.ts";

const RESULTS_FILE = "bench-compare.json";
const settle = () => new Promise((resolve) => setTimeout(resolve, 1000));
const WATCHDOG_MS = 600_000;
/** Rounds of the held phase (see `measurePath`). */
const HELD_ROUNDS = 3;

interface Settings {
  mib: number;
  reps: number;
  latencyConns: number;
  heldConns: number;
  burst: number;
  delayMs: number;
  redisRequests: number;
  soakCycles: number;
  only: string[] | undefined;
}

function parseSettings(args: string[]): Settings {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      "delay-ms": { type: "string" },
      "soak-cycles": { type: "string" },
    },
    strict: true,
  });
  const q = values.quick;
  return {
    mib: q ? 64 : 256,
    reps: q ? 1 : 3,
    latencyConns: q ? 200 : 1000,
    // 2000 more held in the second half make a signal of tens of MiB, above the heap's steps.
    heldConns: q ? 1000 : 4000,
    burst: 100,
    delayMs: Number(values["delay-ms"] ?? 25),
    redisRequests: q ? 2000 : 5000,
    soakCycles: Number(values["soak-cycles"] ?? (q ? 50 : 200)),
    only: values.only?.split(","),
  };
}

function log(line: string): void {
  console.error(`compare: ${line}`);
}

/** What one path measured; NaN where a phase did not run. */
interface PathFigures {
  name: string;
  upGbps: number;
  downGbps: number;
  p50Ms: number;
  p99Ms: number;
  latencyErrors: number;
  heldKiBPerConn: number;
  /** Each round's figure; the largest is `heldKiBPerConn`. */
  heldKiBRounds: number[];
  heldOpened: number;
  redisNewConnRps: number;
  redisKeptRps: number;
  burstSlowestMs: number;
  burstP50Ms: number;
  burstErrors: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const rssKiB = (children: Child[]) => children.reduce((sum, c) => sum + c.memory().rssKiB, 0);

/** Bulk, latency, held memory and redis for one path. */
async function measurePath(path: Path, s: Settings, redisUp: boolean): Promise<PathFigures> {
  const buf = new Uint8Array(256 * 1024);
  const bytes = s.mib * 2 ** 20;
  const gbps = async (transfer: typeof upload, port: number) => {
    const runs: number[] = [];
    for (let i = 0; i < s.reps; i++) {
      runs.push(bytes * 8 / (await transfer(port, bytes, buf)) / 1e9);
    }
    return median(runs);
  };
  log(`${path.name}: bulk`);
  // bore ends both directions at the first FIN, so an upload (which half-closes) fails there.
  const upGbps = await tolerate(`${path.name} upload`, () => gbps(upload, path.ports.discard!));
  const downGbps = await tolerate(
    `${path.name} download`,
    () => gbps(download, path.ports.source!),
  );
  log(`${path.name}: latency`);
  const lat = await latency(
    { direct: path.ports.echo!, tunnel: path.ports.echo! },
    s.latencyConns,
    [],
  );
  log(`${path.name}: ${s.heldConns} held`);
  // The cost of one more held connection: RSS from half of them held to all
  // of them, over the second half (RSS less a figure from before the phase
  // would count whatever the latency phase left in V8's heap), each read a
  // second after the last echo, once the processes have settled. V8 and
  // malloc grow the heap in steps and a collection may run between the two
  // readings (one run read -13 KiB), so the phase runs `HELD_ROUNDS` times.
  // The largest round counts: later rounds reuse memory the first one freed
  // and read low (seen: 36, 15, 15), and a round whose RSS fell is noise.
  const rounds: number[] = [];
  let heldOpened = 0;
  for (let round = 0; round < HELD_ROUNDS; round++) {
    let half = rssKiB(path.children);
    let halfOpened = 0;
    let during = half;
    const held = await hold(
      path.ports.echo!,
      s.heldConns,
      100,
      async () => {
        await settle();
        during = rssKiB(path.children);
      },
      async (opened) => {
        await settle();
        half = rssKiB(path.children);
        halfOpened = opened;
      },
    );
    heldOpened = held.opened;
    rounds.push(
      path.children.length === 0 ? 0 : (during - half) / Math.max(1, held.opened - halfOpened),
    );
  }
  const valid = rounds.filter((k) => k >= 0);
  const heldKiBPerConn = valid.length === 0 ? NaN : Math.max(...valid);
  log(`${path.name}: KiB per held connection, by round: ${rounds.map((k) => k.toFixed(1))}`);
  let redisNewConnRps = NaN;
  let redisKeptRps = NaN;
  if (redisUp && path.ports.redis !== undefined) {
    log(`${path.name}: redis-benchmark`);
    redisNewConnRps = await redisBench(path.ports.redis, 20, false, s.redisRequests);
    redisKeptRps = await redisBench(path.ports.redis, 50, true, s.redisRequests * 10);
  }
  return {
    name: path.name,
    upGbps,
    downGbps,
    p50Ms: percentile(lat.tunnel, 0.5),
    p99Ms: percentile(lat.tunnel, 0.99),
    latencyErrors: lat.errors.tunnel.count + lat.errors.direct.count,
    heldKiBPerConn,
    heldKiBRounds: rounds,
    heldOpened,
    redisNewConnRps,
    redisKeptRps,
    burstSlowestMs: NaN,
    burstP50Ms: NaN,
    burstErrors: 0,
  };
}

/** A phase that may fail on one path (the run goes on): NaN, and the reason logged. */
async function tolerate(what: string, phase: () => Promise<number>): Promise<number> {
  try {
    return await phase();
  } catch (err) {
    log(`${what} failed: ${err instanceof Error ? err.message : err}`);
    return NaN;
  }
}

/** A phase a path cannot run, with the reason. */
class Skip extends Error {}

/** redis-benchmark's GET rate against `port`; `keepAlive` false opens a connection per request. */
async function redisBench(port: number, clients: number, keepAlive: boolean, n: number) {
  const out = await new Deno.Command("redis-benchmark", {
    args: [
      ...["-h", "127.0.0.1", "-p", String(port), "-c", String(clients), "-n", String(n)],
      ...["-k", keepAlive ? "1" : "0", "-t", "get", "-q"],
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const text = new TextDecoder().decode(out.stdout).replace(/\r/g, "\n");
  const rps = [...text.matchAll(/GET: ([\d.]+) requests per second/g)].pop()?.[1];
  if (rps === undefined) {
    log(`redis-benchmark gave no figure: ${new TextDecoder().decode(out.stderr).slice(0, 200)}`);
    return NaN;
  }
  return Number(rps);
}

/** `count` users connect at once and each waits for its first echoed byte; ms per user. */
async function burst(port: number, count: number): Promise<{ times: number[]; errors: number }> {
  const t0 = performance.now();
  let errors = 0;
  const times = await Promise.all(Array.from({ length: count }, async (_, i) => {
    let conn: Deno.TcpConn | undefined;
    const timer = setTimeout(() => conn?.close(), 30_000);
    try {
      conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.setNoDelay(true);
      await conn.write(new Uint8Array([i & 0xff]));
      const b = new Uint8Array(1);
      if ((await conn.read(b)) === null || b[0] !== (i & 0xff)) throw new Error("bad echo");
      return performance.now() - t0;
    } catch {
      errors++;
      return NaN;
    } finally {
      clearTimeout(timer);
      try {
        conn?.close();
      } catch { /* closed */ }
    }
  }));
  return { times: times.filter((t) => !Number.isNaN(t)).sort((a, b) => a - b), errors };
}

/** Server RSS before and after clients connect, expose and leave `cycles` times. */
async function soak(cycles: number, stateDir: string) {
  const { startClient } = await import("../mod.ts");
  const token = crypto.randomUUID().replaceAll("-", "");
  const server = new Child("server", [
    ...["run", "-A", "server.ts", "--bind", "127.0.0.1:0", "--token", token],
    ...["--ports", "31000-31100", "--public-host", "127.0.0.1", "--log-level", "warning"],
    ...["--state-dir", stateDir],
  ]);
  try {
    const control = Number((await server.waitLine(/^listening 127\.0\.0\.1:(\d+)$/))[1]);
    const fingerprint = (await server.waitLine(/^fingerprint (sha256:[0-9a-f]{64})$/))[1]!;
    const cycle = async (i: number) => {
      const client = await startClient({
        server: `127.0.0.1:${control}`,
        token,
        group: `soak-${i % 8}`,
        tls: { fingerprint },
        stateDir,
      });
      await client.expose({ name: "app", local: "127.0.0.1:9", remotePort: 0 });
      await client.close();
    };
    for (let i = 0; i < 20; i++) await cycle(i); // warm-up
    const before = server.memory().rssKiB;
    const t0 = performance.now();
    for (let i = 0; i < cycles; i++) await cycle(i);
    const seconds = (performance.now() - t0) / 1000;
    // Let the collector run before the second reading, as it would in a long-lived server.
    await new Promise((r) => setTimeout(r, 2_000));
    const after = server.memory().rssKiB;
    return { cycles, seconds, rssBeforeMiB: before / 1024, rssAfterMiB: after / 1024 };
  } finally {
    await server.stop();
  }
}

/** Starts one path of the given kind; `via` routes its client through a relay. */
type Starter = (long: boolean) => Promise<Path>;

async function main(args: string[]): Promise<number> {
  const s = parseSettings(args);
  const children: Child[] = [];
  const watchdog = setTimeout(() => {
    console.error(`compare: still running after ${WATCHDOG_MS / 1000}s; stopping`);
    for (const c of children) c.kill();
    Deno.exit(1);
  }, WATCHDOG_MS);
  const relays: Array<{ close(): void }> = [];
  const stateDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "burrow-compare-" });
  try {
    const sink = new Child("sink", ["run", "--allow-net=127.0.0.1", "bench/sink.ts"], true);
    children.push(sink);
    const [, echo, discard, source] = await sink.waitLine(
      /^sink echo=(\d+) discard=(\d+) source=(\d+)$/,
    );
    const services: Services = { echo: +echo!, discard: +discard!, source: +source! };
    let redisUp = false;
    if (findBinary("redis-server") !== undefined) {
      const port = freePort();
      const redis = new Child(
        "redis",
        [
          ...["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
          ...["--maxclients", "10000"],
        ],
        false,
        "redis-server",
      );
      children.push(redis);
      await redis.waitLine(/./, 10_000).catch(() => {});
      services.redis = port;
      redisUp = findBinary("redis-benchmark") !== undefined;
    }
    if (!redisUp) log("redis-server or redis-benchmark missing: the redis phase is skipped");
    const relayed = (long: boolean) =>
      long
        ? (port: number) => {
          const r = startDelayRelay({ hostname: "127.0.0.1", port }, s.delayMs);
          relays.push(r);
          return Promise.resolve({ hostname: "127.0.0.1", port: r.port });
        }
        : undefined;
    let block = 32000;
    const range = () => {
      block += 200;
      return `${block}-${block + 199}`;
    };
    const starters: Array<[string, Starter]> = [
      ["direct", () => Promise.resolve(directPath(services))],
      ["burrow-tls", (long) => {
        const via = relayed(long);
        return burrowPath(services, {
          tls: true,
          stateDir,
          ports: range(),
          ...(via ? { via } : {}),
        });
      }],
      ["burrow-plain", (long) => {
        const via = relayed(long);
        return burrowPath(services, {
          tls: false,
          stateDir,
          ports: range(),
          ...(via ? { via } : {}),
        });
      }],
    ];
    // Not a tunnel: what two Deno hops cost at the least (see floor_relay.ts).
    starters.push(["floor", (long) => {
      if (long) throw new Skip("the floor has no client-to-server link to delay");
      return floorPath(services);
    }]);
    const rathole = findBinary("rathole");
    if (rathole) {
      starters.push(["rathole", (long) => ratholePath(rathole, services, relayed(long))]);
    } else log("rathole not found (PATH or /tmp/peers/bin): skipped");
    const bore = findBinary("bore");
    if (bore) {
      starters.push(["bore", (long) => {
        if (long) throw new Skip("bore's control port is fixed at 0.0.0.0:7835: no relay fits");
        const [min = 0, max = 0] = range().split("-").map(Number);
        return borePath(bore, services, { min, max });
      }]);
    } else log("bore not found (PATH or /tmp/peers/bin): skipped");
    const chosen = starters.filter(([name]) => s.only === undefined || s.only.includes(name));

    const results: PathFigures[] = [];
    for (const [name, start] of chosen) {
      log(`--- ${name} ---`);
      const path = await start(false);
      children.push(...path.children);
      let figures: PathFigures;
      try {
        figures = await measurePath(path, s, redisUp);
      } finally {
        await path.stop();
      }
      if (name !== "direct") {
        log(`${name}: a burst of ${s.burst} users over a ${2 * s.delayMs} ms RTT link`);
        let long: Path;
        try {
          long = await start(true);
        } catch (err) {
          if (!(err instanceof Skip)) throw err;
          log(`${name}: burst skipped: ${err.message}`);
          results.push(figures);
          continue;
        }
        children.push(...long.children);
        try {
          const b = await burst(long.ports.echo!, s.burst);
          figures.burstSlowestMs = b.times.at(-1) ?? NaN;
          figures.burstP50Ms = percentile(b.times, 0.5);
          figures.burstErrors = b.errors;
        } finally {
          await long.stop();
          for (const r of relays.splice(0)) r.close();
        }
      }
      results.push(figures);
    }
    let soaked: Awaited<ReturnType<typeof soak>> | undefined;
    if (s.only === undefined || s.only.includes("soak")) {
      log(`soak: ${s.soakCycles} clients connect, expose and leave`);
      soaked = await soak(s.soakCycles, stateDir);
    }
    report(results, soaked, s);
    await Deno.writeTextFile(
      RESULTS_FILE,
      JSON.stringify(
        {
          date: new Date().toISOString(),
          loadavg: readProc("/proc/loadavg").trim(),
          settings: s,
          results,
          soak: soaked,
        },
        null,
        2,
      ) + "\n",
    );
    console.log(`wrote ${RESULTS_FILE}`);
    return 0;
  } catch (err) {
    console.error(`compare failed: ${err instanceof Error ? err.stack : err}`);
    for (const c of children) if (c.stderrTail()) console.error(c.stderrTail());
    return 1;
  } finally {
    for (const r of relays) r.close();
    await Promise.all(children.map((c) => c.stop()));
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    clearTimeout(watchdog);
  }
}

function report(
  results: PathFigures[],
  soaked: Awaited<ReturnType<typeof soak>> | undefined,
  s: Settings,
) {
  const f = (x: number, d = 1) => Number.isNaN(x) ? "-" : x.toFixed(d);
  console.log(
    `\nburrow and its peers, ${new Date().toISOString()}, ${navigator.hardwareConcurrency} CPUs, ` +
      `load ${readProc("/proc/loadavg").trim()}`,
  );
  const head = [
    "path",
    "up Gb/s",
    "down Gb/s",
    "p50 ms",
    "p99 ms",
    "KiB/held",
    "redis new-conn/s",
    "redis kept req/s",
    `burst100 slowest ms (${2 * s.delayMs} ms RTT)`,
  ];
  console.log(head.join(" | "));
  for (const r of results) {
    console.log([
      r.name,
      f(r.upGbps, 2),
      f(r.downGbps, 2),
      f(r.p50Ms, 2),
      f(r.p99Ms, 2),
      f(r.heldKiBPerConn, 1),
      f(r.redisNewConnRps, 0),
      f(r.redisKeptRps, 0),
      `${f(r.burstSlowestMs, 0)}${r.burstErrors ? ` (${r.burstErrors} errors)` : ""}`,
    ].join(" | "));
  }
  const peers = results.filter((r) => r.name === "rathole" || r.name === "bore");
  const rathole = results.find((r) => r.name === "rathole");
  const tls = results.find((r) => r.name === "burrow (TLS)");
  const plain = results.find((r) => r.name === "burrow --no-tls");
  if (tls && peers.length > 0) {
    const best = (k: keyof PathFigures) => Math.max(...peers.map((p) => p[k] as number));
    // The slower direction counts; a direction a peer cannot run (bore's upload: it ends
    // both directions at the first FIN) is left out rather than making the ratio NaN.
    const bulk = (r: PathFigures) =>
      Math.min(...[r.upGbps, r.downGbps].filter((x) => !Number.isNaN(x)));
    const bestBulk = Math.max(...peers.map(bulk).filter(Number.isFinite));
    console.log("\ntargets (issue 12), burrow TLS against the peers in plaintext:");
    const line = (what: string, ratio: number, target: string, ok: boolean) =>
      console.log(`  ${what}: ${f(ratio, 2)}x (target ${target}) ${ok ? "met" : "MISSED"}`);
    line("bulk vs best peer", bulk(tls) / bestBulk, ">= 1.2", bulk(tls) >= 1.2 * bestBulk);
    if (plain) {
      line(
        "bulk --no-tls vs best peer",
        bulk(plain) / bestBulk,
        ">= 1.5",
        bulk(plain) >= 1.5 * bestBulk,
      );
    }
    if (rathole) {
      line("p50 vs rathole", tls.p50Ms / rathole.p50Ms, "<= 1", tls.p50Ms <= rathole.p50Ms);
      line("p99 vs rathole", tls.p99Ms / rathole.p99Ms, "<= 2", tls.p99Ms <= 2 * rathole.p99Ms);
      line(
        "burst slowest vs rathole",
        tls.burstSlowestMs / rathole.burstSlowestMs,
        "<= 1",
        tls.burstSlowestMs <= rathole.burstSlowestMs,
      );
      line(
        "redis new connections/s vs rathole",
        tls.redisNewConnRps / rathole.redisNewConnRps,
        ">= 1",
        tls.redisNewConnRps >= rathole.redisNewConnRps,
      );
      line(
        "redis kept-alive req/s vs rathole",
        tls.redisKeptRps / rathole.redisKeptRps,
        ">= 1",
        tls.redisKeptRps >= rathole.redisKeptRps,
      );
    }
    console.log(
      `  KiB per held connection: ${f(tls.heldKiBPerConn)} (target <= 20) ${
        Number.isNaN(tls.heldKiBPerConn)
          ? "not measured (RSS fell in every round)"
          : tls.heldKiBPerConn <= 20
          ? "met"
          : "MISSED"
      }; rounds ${tls.heldKiBRounds.map((k) => f(k)).join(", ")}; best peer ${
        f(Math.min(...peers.map((p) => p.heldKiBPerConn).filter((k) => !Number.isNaN(k))))
      }`,
    );
    void best;
  }
  const floor = results.find((r) => r.name.startsWith("deno floor"));
  if (tls && floor) {
    // What burrow adds to the least two Deno hops cost, and where the floor stands to rathole.
    const vs = (r: PathFigures) =>
      `p50 ${f(r.p50Ms / floor.p50Ms, 2)}x, p99 ${f(r.p99Ms / floor.p99Ms, 2)}x, ` +
      `redis new-conn/s ${f(r.redisNewConnRps / floor.redisNewConnRps, 2)}x, ` +
      `kept req/s ${f(r.redisKeptRps / floor.redisKeptRps, 2)}x`;
    console.log(`
against the Deno floor (two bare relays): burrow TLS ${vs(tls)}`);
    if (rathole) console.log(`  rathole against the same floor: ${vs(rathole)}`);
  }
  if (soaked) {
    const growth = soaked.rssAfterMiB / soaked.rssBeforeMiB - 1;
    console.log(
      `soak: ${soaked.cycles} client cycles in ${f(soaked.seconds)} s; server RSS ` +
        `${f(soaked.rssBeforeMiB)} -> ${f(soaked.rssAfterMiB)} MiB (${f(growth * 100)}%, ` +
        `target within 20%) ${Math.abs(growth) <= 0.2 ? "met" : "MISSED"}`,
    );
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
