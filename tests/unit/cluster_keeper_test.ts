/**
 * The lease keeper against a real redis-server: beating keeps claims past
 * many leases, a node that stops beating (frozen or dead) loses its record
 * and claims to the others, a clean stop hands them back at once, and after
 * Redis restarts empty the keeper reasserts what it holds on its own.
 */

import assert from "node:assert/strict";
import { REDIS_MISSING, startRedis } from "../helpers/redis.ts";
import { FeedRecorder, openStore, waitFor } from "../helpers/cluster.ts";
import { type KeeperEvent, LeaseKeeper } from "../../lib/cluster/keeper.ts";
import type { Claim } from "../../lib/cluster/store.ts";

const ignore = REDIS_MISSING !== undefined;
const name = (n: string) => (ignore ? `${n} (skipped: ${REDIS_MISSING})` : n);
const node = (n: string) => ({
  name: n,
  instance: `${n}-1`,
  advertise: "127.0.0.2:7800",
  started: 1,
});

Deno.test({
  name: name("a beating node keeps its claims; a frozen one loses them to the others"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url);
    await using b = await openStore(redis.url);
    using feed = new FeedRecorder(b);
    const ttl = 600;
    const ka = new LeaseKeeper({ store: a, node: node("a"), ttlMs: ttl });
    const kb = new LeaseKeeper({ store: b, node: node("b"), ttlMs: ttl });
    try {
      const got = await a.claim([{ kind: "port", key: "30000" }], {
        node: "a",
        session: "sa",
        runId: "ra",
      }, ttl);
      assert.ok(got.ok);
      ka.hold(got.claims);
      ka.start();
      kb.start();
      // Alive for five leases.
      const until = Date.now() + ttl * 5;
      while (Date.now() < until) {
        const l = await b.lookup({ kind: "port", key: "30000" });
        assert.ok(l.ok);
        assert.equal(l.claim?.node, "a", "a beating node keeps its claim");
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(!feed.messages.some((m) => m.type === "expire"));
      // Node a freezes: no more beats. Node b's beats reap it.
      const frozenAt = Date.now();
      await ka.close();
      await feed.next((m) => m.type === "expire" && m.claim.key === "30000", "a's claim to expire");
      await feed.next(
        (m) => m.type === "node_expire" && m.node.name === "a",
        "a's record to expire",
      );
      const took = Date.now() - frozenAt;
      assert.ok(took < ttl + 5000, `expired after ${took} ms`);
      const mine = await b.claim([{ kind: "port", key: "30000" }], {
        node: "b",
        session: "sb",
        runId: "rb",
      }, ttl);
      assert.ok(mine.ok, "another node can take the port");
    } finally {
      await ka.close();
      await kb.close();
    }
  },
});

Deno.test({
  name: name("a clean stop releases claims and leaves at once"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url);
    await using b = await openStore(redis.url);
    using feed = new FeedRecorder(b);
    const ka = new LeaseKeeper({ store: a, node: node("a"), ttlMs: 60_000 });
    const got = await a.claim([{ kind: "group", key: "lab" }], {
      node: "a",
      session: "sa",
      runId: "ra",
    }, 60_000);
    assert.ok(got.ok);
    ka.hold(got.claims);
    await ka.beat();
    await ka.close({ leave: true });
    await feed.next((m) => m.type === "release" && m.claim.key === "lab", "the release");
    await feed.next((m) => m.type === "node_leave" && m.node.name === "a", "node_leave");
    const l = await b.lookup({ kind: "group", key: "lab" });
    assert.ok(l.ok);
    assert.equal(l.claim, undefined);
  },
});

Deno.test({
  name: name("after Redis restarts empty the keeper reasserts, and uniqueness holds again"),
  ignore,
  async fn() {
    const redis = await startRedis();
    let again: Awaited<ReturnType<typeof startRedis>> | undefined;
    const fast = { reconnect: { initialMs: 50, maxMs: 300 } };
    try {
      await using a = await openStore(redis.url, fast);
      await using b = await openStore(redis.url, fast);
      const ka = new LeaseKeeper({ store: a, node: node("a"), ttlMs: 3000, intervalMs: 200 });
      const events: KeeperEvent[] = [];
      ka.on((e) => events.push(e));
      try {
        const got = await a.claim(
          [
            { kind: "group", key: "lab" },
            { kind: "port", key: "30100" },
            { kind: "host", key: "lab.example.net", meta: "the app's meta" },
          ],
          { node: "a", session: "sa", runId: "ra" },
          3000,
        );
        assert.ok(got.ok);
        const before = new Map(got.claims.map((c) => [c.key, c.token]));
        ka.hold(got.claims);
        ka.start();
        await redis.stop();
        await waitFor(() => events.some((e) => e.type === "unreachable"), "a beat to fail");
        assert.equal(ka.held().length, 3, "nothing is dropped while the store is away");
        again = await startRedis({ port: redis.port });
        await waitFor(() => events.some((e) => e.type === "reasserted"), "the reassert");
        const re = events.find((e) => e.type === "reasserted") as { claims: Claim[] };
        for (const c of re.claims) assert.ok(c.token > (before.get(c.key) ?? Infinity));
        // A host claim comes back with its meta, for the other nodes' edges.
        assert.equal(re.claims.find((c) => c.kind === "host")?.meta, "the app's meta");
        await b.connected();
        const other = await b.claim([{ kind: "port", key: "30100" }], {
          node: "b",
          session: "sb",
          runId: "rb",
        }, 3000);
        assert.ok(!other.ok && other.reason === "held", JSON.stringify(other));
        assert.ok(!events.some((e) => e.type === "lost"));
      } finally {
        await ka.close();
      }
    } finally {
      await redis.stop();
      await again?.stop();
    }
  },
});
