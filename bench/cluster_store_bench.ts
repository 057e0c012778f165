/**
 * How far one Redis carries a burrow cluster's store: claims, registrations
 * (group + port + host in one claim), renewals one at a time and batched as
 * a heartbeat sends them, feed events delivered to every node and their
 * latency, a snapshot of many claims, memory per claim, and redis-benchmark
 * running the claim script itself (the server's ceiling, without our
 * client). Each phase runs for a fixed time on its own redis-server
 * (loopback, no persistence), then everything stops.
 *
 * Run: `deno task bench:cluster` (add `--quick` for 1 s phases).
 *
 * @module
 */

import { RedisStore } from "../lib/cluster/redis_store.ts";
import { feedChannel, SCRIPTS, storeKeys } from "../lib/cluster/redis_scripts.ts";
import type { Claim, FeedMessage } from "../lib/cluster/store.ts";
import { REDIS_MISSING, type RedisProcess, startRedis } from "../tests/helpers/redis.ts";

const QUICK = Deno.args.includes("--quick");
const SECONDS = QUICK ? 1 : 3;
const NODES = 3;
const IN_FLIGHT = 32; // per node
const TTL = 60_000;

if (REDIS_MISSING) {
  console.log(`skipped: ${REDIS_MISSING}`);
  Deno.exit(0);
}

async function stores(redis: RedisProcess, n: number): Promise<RedisStore[]> {
  const out = Array.from({ length: n }, () => new RedisStore({ url: redis.url }));
  await Promise.all(out.map((s) => s.connected()));
  return out;
}

/** Runs `work` in `IN_FLIGHT` loops per store for SECONDS; returns operations per second. */
async function load(
  nodes: RedisStore[],
  work: (store: RedisStore, node: number, i: number) => Promise<boolean>,
): Promise<{ perSecond: number; failed: number }> {
  const until = performance.now() + SECONDS * 1000;
  let done = 0;
  let failed = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(nodes.flatMap((store, node) =>
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < until) {
        if (await work(store, node, next++)) done++;
        else failed++;
      }
    })
  ));
  return { perSecond: done / ((performance.now() - started) / 1000), failed };
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}

const figures: Record<string, string> = {};
const say = (key: string, value: string) => {
  figures[key] = value;
  console.log(`${key.padEnd(44)} ${value}`);
};

async function phase(name: string, body: (redis: RedisProcess) => Promise<void>): Promise<void> {
  await using redis = await startRedis();
  try {
    await body(redis);
  } catch (err) {
    console.log(`${name}: failed: ${err instanceof Error ? err.message : err}`);
  }
}

// 1. Single-key claims, every one a new key (a port claimed by a new session).
await phase("claims", async (redis) => {
  const nodes = await stores(redis, NODES);
  const r = await load(nodes, async (s, node, i) => {
    const owner = { node: `n${node}`, session: `s${i}`, runId: `r${i}` };
    return (await s.claim([{ kind: "port", key: String(i) }], owner, TTL)).ok;
  });
  say(
    "claims/s (1 key, 3 nodes x 32 in flight)",
    `${r.perSecond.toFixed(0)} (${r.failed} refused)`,
  );
  await Promise.all(nodes.map((s) => s.close()));
});

// 2. Registrations: group + port + host in one all-or-nothing claim.
await phase("registrations", async (redis) => {
  const nodes = await stores(redis, NODES);
  const r = await load(nodes, async (s, node, i) => {
    const owner = { node: `n${node}`, session: `s${i}`, runId: `r${i}` };
    const keys = [
      { kind: "group", key: `g${i}` },
      { kind: "port", key: String(i) },
      { kind: "host", key: `h${i}.example.net` },
    ] as const;
    return (await s.claim([...keys], owner, TTL)).ok;
  });
  say("registrations/s (3 keys each)", `${r.perSecond.toFixed(0)} (${r.failed} refused)`);
  await Promise.all(nodes.map((s) => s.close()));
});

// 3. Renewals: each node holds its share of 30,000 keys; one key per call, then batches of 500.
await phase("renewals", async (redis) => {
  const nodes = await stores(redis, NODES);
  const per = 10_000;
  const held: Claim[][] = [];
  for (const [node, s] of nodes.entries()) {
    const mine: Claim[] = [];
    for (let from = 0; from < per; from += 500) {
      const keys = Array.from({ length: 500 }, (_, j) => ({
        kind: "port" as const,
        key: String(node * per + from + j),
      }));
      const r = await s.claim(
        keys,
        { node: `n${node}`, session: `s${node}`, runId: `r${node}` },
        TTL,
      );
      if (!r.ok) throw new Error(`setup claim failed: ${JSON.stringify(r)}`);
      mine.push(...r.claims);
    }
    held.push(mine);
  }
  const single = await load(nodes, async (s, node, i) => {
    const c = held[node]![i % per]!;
    const r = await s.renew([{ ...c, session: c.session }], TTL);
    return r.ok && r.lost.length === 0;
  });
  say("renewals/s, one key per call", `${single.perSecond.toFixed(0)} (${single.failed} lost)`);
  let batches = 0;
  const until = performance.now() + SECONDS * 1000;
  const started = performance.now();
  await Promise.all(nodes.flatMap((s, node) =>
    Array.from({ length: 4 }, async (_, w) => {
      for (let i = w; performance.now() < until; i += 4) {
        const from = (i * 500) % per;
        const r = await s.renew(held[node]!.slice(from, from + 500), TTL);
        if (r.ok) batches++;
      }
    })
  ));
  const secs = (performance.now() - started) / 1000;
  say(
    "renewals/s, batches of 500 (heartbeat form)",
    `${(batches * 500 / secs).toFixed(0)} keys/s in ${(batches / secs).toFixed(0)} calls/s`,
  );
  const t0 = performance.now();
  const snap = await nodes[0]!.snapshot();
  const ms = performance.now() - t0;
  say(
    "snapshot of 30,000 claims",
    snap.ok ? `${ms.toFixed(0)} ms, ${snap.snapshot.claims.length} claims` : snap.error,
  );
  const memory = /used_memory:(\d+)/.exec(await redis.cli("INFO", "memory"))?.[1];
  say("memory per claim (30,000 held)", `${(Number(memory) / (per * NODES)).toFixed(0)} bytes`);
  await Promise.all(nodes.map((s) => s.close()));
});

// 4. The feed: one node claims; three others hear every event. Latency is claim sent -> event heard.
await phase("feed", async (redis) => {
  const [writer, ...listeners] = await stores(redis, 1 + NODES);
  const sent = new Map<string, number>();
  const latencies: number[] = [];
  const heard = listeners.map(() => 0);
  await Promise.all(listeners.map((l) =>
    new Promise<void>((resolve) => {
      const off = l.subscribe((m) => {
        if (m.type === "feed_ready") {
          off();
          resolve();
        }
      });
    })
  ));
  for (const [n, l] of listeners.entries()) {
    l.subscribe((m: FeedMessage) => {
      if (m.type !== "claim") return;
      heard[n]!++;
      const t = sent.get(m.claim.key);
      if (t !== undefined) latencies.push(performance.now() - t);
    });
  }
  const r = await load([writer!], async (s, _node, i) => {
    sent.set(String(i), performance.now());
    return (await s.claim([{ kind: "port", key: String(i) }], {
      node: "w",
      session: `s${i}`,
      runId: `r${i}`,
    }, TTL)).ok;
  });
  await new Promise((res) => setTimeout(res, 500)); // the last events in flight
  latencies.sort((a, b) => a - b);
  say("feed: claims/s by one node", r.perSecond.toFixed(0));
  say(
    "feed: events/s heard by each of 3 nodes",
    heard.map((h) => (h / SECONDS).toFixed(0)).join(", "),
  );
  say(
    "feed: latency claim sent -> heard, p50/p99",
    `${pct(latencies, 0.5).toFixed(1)} / ${pct(latencies, 0.99).toFixed(1)} ms (under load)`,
  );
  await Promise.all([writer!, ...listeners].map((s) => s.close()));
});

// 5. redis-benchmark: the claim script and the server's own ceiling, without our client.
await phase("redis-benchmark", async (redis) => {
  const sha = (await redis.cli("SCRIPT", "LOAD", SCRIPTS.claim)).trim();
  const keys = storeKeys("burrow");
  const owner = JSON.stringify({ node: "b", session: "s", runId: "r" });
  const requests = JSON.stringify([{ kind: "port", key: "__rand_int__" }]);
  const n = QUICK ? 20_000 : 100_000;
  const run = async (...args: string[]) => {
    const out = await new Deno.Command("redis-benchmark", {
      args: ["-p", String(redis.port), "-n", String(n), "-c", "50", "-q", ...args],
      stdout: "piped",
      stderr: "null",
    }).output();
    const last = new TextDecoder().decode(out.stdout).split("\r").at(-1)?.trim() ?? "";
    return last.replace(/^.*: (?=[\d.]+ requests)/s, "");
  };
  say(
    "redis-benchmark EVALSHA claim, -c 50",
    await run(
      "-r",
      "1000000",
      "EVALSHA",
      sha,
      String(keys.length),
      ...keys,
      feedChannel("burrow"),
      owner,
      String(TTL),
      requests,
    ),
  );
  say("redis-benchmark SET, -c 50 (baseline)", await run("-t", "set"));
  say("redis-benchmark SET, -c 50 -P 16", await run("-t", "set", "-P", "16"));
});

console.log(JSON.stringify({ seconds: SECONDS, nodes: NODES, inFlight: IN_FLIGHT, figures }));
