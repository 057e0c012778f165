/**
 * The in-memory cluster view against a real redis-server: snapshot then
 * feed, lookups by port and host name, merging by fencing token (stale and
 * repeated events published by hand on the real channel), and resync after
 * the store restarted empty.
 */

import assert from "node:assert/strict";
import { REDIS_MISSING, startRedis } from "../helpers/redis.ts";
import { openStore, waitFor } from "../helpers/cluster.ts";
import { ClusterView, type ViewEvent } from "../../lib/cluster/view.ts";
import { feedChannel } from "../../lib/cluster/redis_scripts.ts";
import type { Claim } from "../../lib/cluster/store.ts";

const ignore = REDIS_MISSING !== undefined;
const name = (n: string) => (ignore ? `${n} (skipped: ${REDIS_MISSING})` : n);
const TTL = 10_000;
const a1 = { node: "a", session: "sa", runId: "ra" };

Deno.test({
  name: name("the view starts from a snapshot, follows the feed, and answers by port and host"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url);
    await using b = await openStore(redis.url);
    await a.join({ name: "a", instance: "i", advertise: "127.0.0.2:7800", started: 1 }, TTL);
    const before = await a.claim([{ kind: "port", key: "20001" }], a1, TTL);
    assert.ok(before.ok);
    const view = new ClusterView(b);
    const events: ViewEvent[] = [];
    view.on((e) => events.push(e));
    try {
      await view.synced();
      await waitFor(() => view.byPort(20001) !== undefined, "the snapshot's claim");
      assert.equal(view.byPort(20001)?.node, "a");
      assert.equal(view.node("a")?.advertise, "127.0.0.2:7800");
      // Claims after the snapshot arrive by the feed.
      const got = await a.claim(
        [{ kind: "host", key: "App.Example.NET" }, { kind: "group", key: "lab" }],
        a1,
        TTL,
      );
      assert.ok(got.ok);
      await waitFor(() => view.byHost("app.example.net") !== undefined, "the host claim");
      assert.equal(view.byHost("APP.example.net")?.session, "sa");
      assert.equal(view.byGroup("lab")?.node, "a");
      assert.equal(view.byPort(20002), undefined);
      // A release removes it from every lookup.
      const host = got.claims[0] as Claim;
      assert.ok((await a.release([{ ...host, session: "sa" }])).ok);
      await waitFor(() => view.byHost("app.example.net") === undefined, "the release");
      assert.ok(events.some((e) => e.type === "released" && e.why === "release"));
      assert.deepEqual(view.claims("group").map((c) => c.key), ["lab"]);
      assert.equal(view.nodes().length, 1);
    } finally {
      view.close();
    }
  },
});

Deno.test({
  name: name("the view keeps the newest token: stale and repeated events change nothing"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url);
    await using b = await openStore(redis.url);
    const view = new ClusterView(b);
    try {
      await view.synced();
      const first = await a.claim([{ kind: "port", key: "20010" }], a1, TTL);
      assert.ok(first.ok);
      const old = first.claims[0] as Claim;
      const moved = await a.claim([{ kind: "port", key: "20010" }], {
        node: "b",
        session: "sb",
        runId: "ra",
      }, TTL);
      assert.ok(moved.ok);
      await waitFor(() => view.byPort(20010)?.node === "b", "the takeover");
      // Replay the old claim and its release on the real channel, as a late
      // or duplicated delivery would: the view must keep the takeover.
      const channel = feedChannel("burrow");
      await redis.cli("PUBLISH", channel, JSON.stringify({ type: "claim", claim: old }));
      await redis.cli("PUBLISH", channel, JSON.stringify({ type: "release", claim: old }));
      await redis.cli("PUBLISH", channel, "not json");
      // A marker after them: once the view has seen the next real event, it has seen those.
      assert.ok((await a.claim([{ kind: "port", key: "20011" }], a1, TTL)).ok);
      await waitFor(() => view.byPort(20011) !== undefined, "the marker claim");
      assert.equal(view.byPort(20010)?.session, "sb");
      assert.equal(view.byPort(20010)?.token, moved.claims[0]?.token);
    } finally {
      view.close();
    }
  },
});

Deno.test({
  name: name("after an empty restart the view resyncs: lost claims go, reasserted ones return"),
  ignore,
  async fn() {
    const redis = await startRedis();
    let again: Awaited<ReturnType<typeof startRedis>> | undefined;
    try {
      const fast = { reconnect: { initialMs: 50, maxMs: 300 } };
      await using a = await openStore(redis.url, fast);
      await using b = await openStore(redis.url, fast);
      const view = new ClusterView(b, { retryMs: 100 });
      const events: ViewEvent[] = [];
      view.on((e) => events.push(e));
      try {
        const got = await a.claim(
          [{ kind: "port", key: "20020" }, { kind: "port", key: "20021" }],
          a1,
          TTL,
        );
        assert.ok(got.ok);
        await view.synced();
        await waitFor(() => view.claims().length === 2, "both claims in the view");
        await redis.stop();
        // While the store is gone, the view keeps serving what it knew.
        await waitFor(() => b.state.status === "unreachable", "b to notice");
        assert.equal(view.byPort(20020)?.node, "a");
        again = await startRedis({ port: redis.port });
        await a.connected();
        // Node a reasserts one of its two claims; the other is gone for good.
        const held = got.claims[0] as Claim;
        const re = await a.claim([{ kind: held.kind, key: held.key, token: held.token }], a1, TTL);
        assert.ok(re.ok);
        await waitFor(
          () => view.byPort(20021) === undefined && view.byPort(20020) !== undefined,
          "the view to match the restarted store",
        );
        assert.ok(events.some((e) => e.type === "released" && e.claim.key === "20021"));
        assert.ok((view.byPort(20020)?.token ?? 0) > held.token);
      } finally {
        view.close();
      }
    } finally {
      await redis.stop();
      await again?.stop();
    }
  },
});
