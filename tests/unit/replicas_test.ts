/**
 * Which replica serves the next user (`lib/server/replicas.ts`): round
 * robin and least connections, passing over unhealthy, tried and unusable
 * replicas, and joining and leaving in the middle of a turn.
 */

import assert from "node:assert/strict";
import { type Replica, ReplicaSet } from "../../lib/server/replicas.ts";

const none = new Set<Replica<string>>();

function set(policy: "round_robin" | "least_conn", ...names: string[]): ReplicaSet<string> {
  const replicas = new ReplicaSet<string>(policy);
  for (const name of names) replicas.add(name, `10.0.0.1:${name}`);
  return replicas;
}

function picks(replicas: ReplicaSet<string>, n: number): string[] {
  return Array.from({ length: n }, () => replicas.pick(none)?.session ?? "-");
}

Deno.test("round robin takes each replica in turn, evenly", () => {
  const replicas = set("round_robin", "a", "b", "c");
  const counts = new Map<string, number>();
  for (const name of picks(replicas, 300)) counts.set(name, (counts.get(name) ?? 0) + 1);
  assert.deepEqual(Object.fromEntries(counts), { a: 100, b: 100, c: 100 });
  assert.deepEqual(picks(replicas, 4), ["a", "b", "c", "a"]);
});

Deno.test("an unhealthy replica gets no users and comes back in turn once healthy", () => {
  const replicas = set("round_robin", "a", "b", "c");
  assert.ok(replicas.setHealth("b", false, "cannot reach 127.0.0.1:80"));
  assert.equal(replicas.setHealth("b", false), undefined, "no change, no report");
  assert.equal(replicas.of("b")?.reason, "cannot reach 127.0.0.1:80");
  assert.deepEqual(picks(replicas, 4), ["a", "c", "a", "c"]);
  assert.ok(replicas.setHealth("b", true));
  assert.equal(replicas.of("b")?.reason, undefined);
  assert.deepEqual(picks(replicas, 3), ["a", "b", "c"]);
});

Deno.test("a user is tried on each replica once, then on none", () => {
  const replicas = set("round_robin", "a", "b", "c");
  const tried = new Set<Replica<string>>();
  const order: string[] = [];
  for (let r = replicas.pick(tried); r; r = replicas.pick(tried)) {
    tried.add(r);
    order.push(r.session);
  }
  assert.deepEqual(order, ["a", "b", "c"]);
  assert.equal(replicas.pick(tried), undefined);
  assert.equal(replicas.pick(none, (r) => r.session === "z"), undefined, "none usable");
  const all = set("round_robin", "a", "b");
  all.setHealth("a", false);
  all.setHealth("b", false);
  assert.equal(all.pick(none), undefined, "all unhealthy: nobody");
});

Deno.test("least_conn takes the replica with the fewest users, ties in turn", () => {
  const replicas = set("least_conn", "a", "b", "c");
  replicas.of("a")!.active = 5;
  replicas.of("b")!.active = 1;
  replicas.of("c")!.active = 1;
  const first = replicas.pick(none)!;
  assert.equal(first.session, "b");
  first.active++;
  assert.equal(replicas.pick(none)?.session, "c");
  replicas.setHealth("c", false);
  assert.equal(replicas.pick(none)?.session, "b", "an unhealthy replica is passed over");
  assert.equal(replicas.policy, "least_conn");
});

Deno.test("replicas join and leave: only the one leaving goes; the last one says so", () => {
  const replicas = set("round_robin", "a", "b", "c");
  assert.deepEqual(picks(replicas, 2), ["a", "b"]);
  assert.equal(replicas.remove("b"), false);
  assert.deepEqual(picks(replicas, 3), ["c", "a", "c"]);
  assert.equal(replicas.add("a", "again").clientAddr, "10.0.0.1:a", "added once");
  replicas.add("d", "10.0.0.1:d");
  assert.equal(replicas.size, 3);
  assert.equal(replicas.remove("zz"), false, "not a replica: nothing changes");
  assert.equal(replicas.remove("a"), false);
  assert.equal(replicas.remove("c"), false);
  assert.equal(replicas.remove("d"), true, "the last one");
  assert.equal(replicas.pick(none), undefined);
  assert.equal(replicas.setHealth("a", false), undefined, "a gone replica has no health");
});
