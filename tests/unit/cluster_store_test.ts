/**
 * The Redis cluster store against a real redis-server (one per test, on a
 * free port, without persistence): uniqueness, leases, fencing, takeover,
 * the feed, snapshots, node membership, outages and masked credentials.
 */

import assert from "node:assert/strict";
import { configure, reset } from "@logtape/logtape";
import { REDIS_MISSING, startRedis } from "../helpers/redis.ts";
import { FeedRecorder, openStore, waitFor } from "../helpers/cluster.ts";
import type { Claim, ClaimKey, FeedMessage, Owner } from "../../lib/cluster/store.ts";
import { RedisStore } from "../../lib/cluster/redis_store.ts";

const ignore = REDIS_MISSING !== undefined;
const name = (n: string) => (ignore ? `${n} (skipped: ${REDIS_MISSING})` : n);
const TTL = 10_000;

const owner = (node: string, session: string, runId: string): Owner => ({ node, session, runId });
const port = (p: number): ClaimKey => ({ kind: "port", key: String(p) });
const isEvent = (type: string, key: string) => (m: FeedMessage) =>
  m.type === type && "claim" in m && m.claim.key === key;

Deno.test({
  name: name("claims are unique under concurrent claims from three nodes"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url);
    await using b = await openStore(redis.url);
    await using c = await openStore(redis.url);
    const stores = [a, b, c];
    const ports = Array.from({ length: 60 }, (_, i) => 21000 + i);
    // Every node asks for every port at once, each with its own run.
    const results = await Promise.all(
      stores.flatMap((store, n) =>
        ports.map(async (p) => ({
          p,
          n,
          r: await store.claim([port(p)], owner(`n${n}`, `s${n}-${p}`, `r${n}`), TTL),
        }))
      ),
    );
    const winners = new Map<number, number[]>();
    for (const { p, n, r } of results) {
      if (r.ok) winners.set(p, [...(winners.get(p) ?? []), n]);
      else assert.equal(r.reason, "held", `port ${p} node ${n}: ${JSON.stringify(r)}`);
    }
    for (const p of ports) assert.equal(winners.get(p)?.length, 1, `port ${p}: ${winners.get(p)}`);
    // The store agrees with the winners, and tokens never repeat.
    const snap = await a.snapshot();
    assert.ok(snap.ok);
    assert.equal(snap.snapshot.claims.length, ports.length);
    for (const claim of snap.snapshot.claims) {
      assert.equal(claim.node, `n${winners.get(Number(claim.key))?.[0]}`);
    }
    const tokens = snap.snapshot.claims.map((x) => x.token);
    assert.equal(new Set(tokens).size, tokens.length);
  },
});

Deno.test({
  name: name("a claim of several keys is all or nothing"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url);
    await using b = await openStore(redis.url);
    assert.ok((await a.claim([port(22001)], owner("a", "sa", "ra"), TTL)).ok);
    const r = await b.claim(
      [{ kind: "group", key: "lab" }, port(22000), port(22001), {
        kind: "host",
        key: "Web.Example",
      }],
      owner("b", "sb", "rb"),
      TTL,
    );
    assert.ok(!r.ok && r.reason === "held");
    assert.deepEqual(r.conflicts.map((x) => [x.key, x.node]), [["22001", "a"]]);
    for (const key of [{ kind: "group", key: "lab" } as const, port(22000)]) {
      const l = await b.lookup(key);
      assert.ok(l.ok);
      assert.equal(l.claim, undefined, `${key.kind}/${key.key} must stay free`);
    }
    // Host names compare in lower case.
    assert.ok(
      (await b.claim([{ kind: "host", key: "Web.Example" }], owner("b", "sb", "rb"), TTL)).ok,
    );
    const h = await a.claim([{ kind: "host", key: "web.EXAMPLE" }], owner("a", "sa", "ra"), TTL);
    assert.ok(!h.ok && h.reason === "held");
  },
});

Deno.test({
  name: name("a lease runs out unless renewed, and renewal keeps it"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url);
    await using b = await openStore(redis.url);
    using feed = new FeedRecorder(b);
    const ttl = 600;
    const first = await a.claim([port(23000), port(23001)], owner("a", "sa", "ra"), ttl);
    assert.ok(first.ok);
    const [kept, frozen] = first.claims as [Claim, Claim];
    // Renew one of the two for longer than a lease: it stays; the other runs out.
    const started = Date.now();
    while (Date.now() - started < ttl * 3) {
      const r = await a.renew([{ ...kept, session: "sa" }], ttl);
      assert.ok(r.ok);
      assert.equal(r.kept.length, 1, `renewal lost the claim: ${JSON.stringify(r)}`);
      await b.reap();
      await new Promise((res) => setTimeout(res, ttl / 4));
    }
    const expired = await feed.next(isEvent("expire", "23001"), "expiry of port 23001");
    assert.equal((expired as { claim: Claim }).claim.token, frozen.token);
    const still = await b.lookup(port(23000));
    assert.ok(still.ok);
    assert.equal(still.claim?.token, kept.token);
    // The frozen holder comes back: too late, its lease is gone, and another node took it.
    assert.ok((await b.claim([port(23001)], owner("b", "sb", "rb"), TTL)).ok);
    const late = await a.renew([{ ...frozen, session: "sa" }], ttl);
    assert.ok(late.ok);
    assert.equal(late.kept.length, 0);
    assert.equal(late.lost[0]?.holder?.node, "b");
  },
});

Deno.test({
  name: name("a lease that ran out is free even before any reaper ran"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url);
    await using b = await openStore(redis.url);
    assert.ok((await a.claim([port(23500)], owner("a", "sa", "ra"), 300)).ok);
    const refused = await b.claim([port(23500)], owner("b", "sb", "rb"), TTL);
    assert.ok(!refused.ok);
    await waitFor(
      async () => (await b.claim([port(23500)], owner("b", "sb", "rb"), TTL)).ok,
      "expiry",
    );
    const l = await a.lookup(port(23500));
    assert.ok(l.ok);
    assert.equal(l.claim?.node, "b");
  },
});

Deno.test({
  name: name("takeover by run id replaces the holder; the old token can neither renew nor release"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url);
    await using b = await openStore(redis.url);
    using feed = new FeedRecorder(a);
    const keys = [{ kind: "group", key: "lab" } as const, port(24000)];
    const old = await a.claim(keys, owner("a", "s-old", "run-1"), TTL);
    assert.ok(old.ok);
    // Another run cannot have it.
    assert.ok(!(await b.claim(keys, owner("b", "s-x", "run-2"), TTL)).ok);
    // The same run, reconnected to node b with a new session, takes it over.
    const moved = await b.claim(keys, owner("b", "s-new", "run-1"), TTL);
    assert.ok(moved.ok);
    assert.deepEqual(moved.replaced.map((c) => c.session), ["s-old", "s-old"]);
    for (const [i, c] of moved.claims.entries()) {
      assert.ok(c.token > (old.claims[i]?.token ?? Infinity), "the token grows on takeover");
      assert.equal(c.node, "b");
    }
    const event = await feed.next(
      (m) => m.type === "claim" && m.claim.key === "24000" && m.claim.session === "s-new",
      "the takeover on the feed",
    );
    assert.equal(event.type === "claim" ? event.replaced?.session : undefined, "s-old");
    // Node a comes back with its old tokens: refused on every path.
    const stale = old.claims.map((c) => ({ ...c, session: "s-old" }));
    const renew = await a.renew(stale, TTL);
    assert.ok(renew.ok);
    assert.equal(renew.kept.length, 0);
    assert.deepEqual(renew.lost.map((l) => l.holder?.session), ["s-new", "s-new"]);
    const release = await a.release(stale);
    assert.ok(release.ok);
    assert.equal(release.released.length, 0);
    const reassert = await a.claim(
      old.claims.map((c) => ({ kind: c.kind, key: c.key, token: c.token })),
      owner("a", "s-old", "run-1"),
      TTL,
    );
    assert.ok(!reassert.ok && reassert.reason === "held", "a reassert never takes over");
    const l = await a.lookup(port(24000));
    assert.ok(l.ok);
    assert.equal(l.claim?.session, "s-new");
  },
});

Deno.test({
  name: name("the feed delivers claims and releases to the other nodes, in order"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url);
    await using b = await openStore(redis.url);
    await using c = await openStore(redis.url);
    using fb = new FeedRecorder(b);
    using fc = new FeedRecorder(c);
    const got = await a.claim([port(25000)], owner("a", "sa", "ra"), TTL);
    assert.ok(got.ok);
    const [claim] = got.claims as [Claim];
    const released = await a.release([{ ...claim, session: "sa" }]);
    assert.ok(released.ok);
    assert.deepEqual(released.released, [port(25000)]);
    for (const feed of [fb, fc]) {
      await feed.next(isEvent("release", "25000"), "the release");
      const events = feed.messages.filter((m) => "claim" in m && m.claim.key === "25000");
      assert.deepEqual(events.map((m) => m.type), ["claim", "release"]);
      assert.deepEqual(events.map((m) => "claim" in m && m.claim.token), [
        claim.token,
        claim.token,
      ]);
    }
    // Releasing twice is harmless and says so.
    const again = await a.release([{ ...claim, session: "sa" }]);
    assert.ok(again.ok);
    assert.deepEqual(again.notHeld, [port(25000)]);
  },
});

Deno.test({
  name: name("a snapshot holds every live claim and node"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url);
    const info = { name: "a", instance: "i1", advertise: "127.0.0.2:7800", started: Date.now() };
    const joined = await a.join(info, TTL);
    assert.ok(joined.ok && joined.fresh);
    assert.ok(
      (await a.claim([port(26000), { kind: "group", key: "g" }], owner("a", "s", "r"), TTL)).ok,
    );
    assert.ok((await a.claim([port(26001)], owner("a", "s2", "r2"), 200)).ok);
    await waitFor(async () => {
      const s = await a.snapshot();
      return s.ok && s.snapshot.claims.length === 2;
    }, "the short lease to leave the snapshot");
    const s = await a.snapshot();
    assert.ok(s.ok);
    assert.deepEqual(s.snapshot.claims.map((c) => `${c.kind}/${c.key}`).sort(), [
      "group/g",
      "port/26000",
    ]);
    assert.equal(s.snapshot.nodes.length, 1);
    assert.equal(s.snapshot.nodes[0]?.advertise, "127.0.0.2:7800");
    assert.ok(s.snapshot.epoch.length > 0);
  },
});

Deno.test({
  name: name("node membership: join, a second instance of a name refused, leave, expiry"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url);
    await using b = await openStore(redis.url);
    using feed = new FeedRecorder(b);
    const info = { name: "n1", instance: "i1", advertise: "127.0.0.2:7800", started: Date.now() };
    assert.ok((await a.join(info, TTL)).ok);
    const beat = await a.join(info, TTL);
    assert.ok(beat.ok && !beat.fresh, "a heartbeat is not a fresh join");
    const twin = await b.join({ ...info, instance: "i2" }, TTL);
    assert.ok(!twin.ok && twin.reason === "name_taken");
    assert.equal(twin.holder.instance, "i1");
    assert.ok((await a.leave(info)).ok);
    await feed.next((m) => m.type === "node_leave" && m.node.name === "n1", "node_leave");
    // A node that stops beating expires; the name is then free for another instance.
    assert.ok((await a.join(info, 300)).ok);
    await waitFor(async () => {
      await b.reap();
      return feed.messages.some((m) => m.type === "node_expire" && m.node.name === "n1");
    }, "node_expire");
    const other = await b.join({ ...info, instance: "i2" }, TTL);
    assert.ok(other.ok && other.fresh);
    const s = await b.snapshot();
    assert.ok(s.ok);
    assert.deepEqual(s.snapshot.nodes.map((n) => n.instance), ["i2"]);
  },
});

Deno.test({
  name: name(
    "Redis stopped and restarted empty: unreachable, reconnect, reassert restores uniqueness",
  ),
  ignore,
  async fn() {
    const redis = await startRedis();
    let again: Awaited<ReturnType<typeof startRedis>> | undefined;
    try {
      await using a = await openStore(redis.url, { reconnect: { initialMs: 50, maxMs: 300 } });
      await using b = await openStore(redis.url, { reconnect: { initialMs: 50, maxMs: 300 } });
      using fa = new FeedRecorder(a);
      const got = await a.claim([port(27000)], owner("a", "sa", "ra"), TTL);
      assert.ok(got.ok);
      const [held] = got.claims as [Claim];
      const before = await a.snapshot();
      assert.ok(before.ok);

      const stoppedAt = Date.now();
      await redis.stop();
      await waitFor(() => a.state.status === "unreachable", "a to see the store gone");
      assert.ok(a.state.status === "unreachable" && a.state.since >= stoppedAt - 1000);
      const meanwhile = await b.claim([port(27001)], owner("b", "sb", "rb"), TTL);
      assert.ok(!meanwhile.ok && meanwhile.reason === "unreachable", JSON.stringify(meanwhile));
      assert.ok(meanwhile.since >= stoppedAt - 1000);

      again = await startRedis({ port: redis.port });
      await fa.next((m) => m.type === "feed_ready", "the feed to come back");
      assert.equal(a.state.status, "connected");
      // Empty: the renewal finds nothing, a claim by another run would succeed...
      const renew = await a.renew([{ ...held, session: "sa" }], TTL);
      assert.ok(renew.ok);
      assert.equal(renew.lost.length, 1);
      // ...so a reasserts first (what a node does on `reset` / a fresh join).
      const re = await a.claim(
        [{ kind: "port", key: "27000", token: held.token }],
        owner("a", "sa", "ra"),
        TTL,
      );
      assert.ok(re.ok);
      assert.ok((re.claims[0]?.token ?? 0) > held.token, "tokens stay monotonic across the loss");
      await b.connected();
      const taken = await b.claim([port(27000)], owner("b", "sb", "rb"), TTL);
      assert.ok(!taken.ok && taken.reason === "held", JSON.stringify(taken));
      // The epoch changed: listeners were told to resync and reassert.
      await waitFor(() => fa.messages.some((m) => m.type === "reset"), "a reset on a's feed");
      const after = await a.snapshot();
      assert.ok(after.ok);
      assert.notEqual(after.snapshot.epoch, before.snapshot.epoch);
    } finally {
      await redis.stop();
      await again?.stop();
    }
  },
});

Deno.test({
  name: name("a frozen Redis (SIGSTOP) makes operations answer unreachable within the timeout"),
  ignore,
  async fn() {
    await using redis = await startRedis();
    await using a = await openStore(redis.url, { commandTimeoutMs: 300 });
    redis.pause();
    try {
      const started = Date.now();
      const r = await a.claim([port(28000)], owner("a", "sa", "ra"), TTL);
      assert.ok(!r.ok && r.reason === "unreachable");
      assert.match(r.error, /no reply within 300 ms/);
      assert.ok(Date.now() - started < 5000);
      assert.equal(a.state.status, "unreachable");
    } finally {
      redis.resume();
    }
    await waitFor(async () => (await a.claim([port(28000)], owner("a", "sa", "ra"), TTL)).ok, "ok");
    assert.equal(a.state.status, "connected");
  },
});

Deno.test({
  name: name("credentials never show: not in the address, errors, states nor log lines"),
  ignore,
  async fn() {
    const password = "correct-horse-battery";
    const wrong = "wrong-staple-password";
    await using redis = await startRedis({ password });
    const lines: string[] = [];
    await configure({
      sinks: { memory: (record) => lines.push(record.message.join("")) },
      loggers: [
        { category: ["burrow"], sinks: ["memory"], lowestLevel: "debug" },
        { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
      ],
      reset: true,
    });
    const url = `redis://burrow-user:${wrong}@127.0.0.1:${redis.port}/0`;
    const store = new RedisStore({ url, commandTimeoutMs: 1000 });
    try {
      assert.equal(store.address, `127.0.0.1:${redis.port}`);
      await waitFor(
        () => store.state.status === "unreachable" && /WRONGPASS|NOAUTH/.test(store.state.error),
        "the store to refuse the password",
      );
      const r = await store.claim([port(29000)], owner("a", "s", "r"), TTL);
      assert.ok(!r.ok && r.reason === "unreachable");
      const said = [JSON.stringify(store.state), r.error, ...lines].join("\n");
      assert.ok(lines.length > 0, "something was logged");
      assert.ok(!said.includes(wrong), said);
      assert.ok(!said.includes(password), said);
    } finally {
      await store.close();
      await reset();
    }
    // The right password works.
    await using good = await openStore(redis.url);
    assert.ok((await good.claim([port(29000)], owner("a", "s", "r"), TTL)).ok);
  },
});
