/**
 * The server's pure state in `lib/server/registry.ts`: groups, port claims and the
 * work-connection pool, tested without any sockets.
 */

import assert from "node:assert/strict";
import type { PortRange } from "../../lib/util/addr.ts";
import { type PortRefusal, Registry } from "../../lib/server/registry.ts";

interface Session {
  id: string;
}

function registry(...ranges: Array<[number, number]>): Registry<Session> {
  return new Registry<Session>(ranges.map(([from, to]): PortRange => ({ from, to })));
}

function isRefusal(x: number[] | PortRefusal): x is PortRefusal {
  return !Array.isArray(x);
}

Deno.test("a group name can be live only once", () => {
  const reg = registry([1000, 1010]);
  const s1 = { id: "s1" };
  const entry = reg.addGroup("lab", s1);
  assert.equal(entry.name, "lab");
  assert.equal(entry.session, s1);
  assert.equal(entry.apps.size, 0);
  assert.equal(reg.group("lab"), entry);
  assert.throws(() => reg.addGroup("lab", { id: "s2" }), /group "lab" is already live/);
  assert.equal(reg.group("lab")?.session, s1, "the failed add changed nothing");
  reg.addGroup("home", { id: "s2" });
  assert.deepEqual([...reg.groups()].map((g) => g.name).sort(), ["home", "lab"]);
  assert.equal(reg.group("nope"), undefined);
});

Deno.test("removeGroup only removes a group for the session that owns it", () => {
  const reg = registry([1000, 1010]);
  const old = { id: "old" };
  const successor = { id: "new" };
  reg.addGroup("lab", old);
  reg.claim("lab", "ssh", 1000);
  // A takeover: the old session's group is replaced by the successor's.
  assert.deepEqual(reg.removeGroup("lab", old).map((a) => a.port), [1000]);
  reg.addGroup("lab", successor);
  reg.claim("lab", "ssh", 1001);
  // The old session cleaning up late must not touch its successor.
  assert.deepEqual(reg.removeGroup("lab", old), []);
  assert.equal(reg.group("lab")?.session, successor);
  assert.equal(reg.group("lab")?.apps.get("ssh")?.port, 1001);
  assert.deepEqual(reg.candidates(1001, undefined), {
    code: "port_taken",
    message: "port 1001 is taken by lab/ssh",
  });
  // A lookalike session object (equal fields, different identity) is not the owner.
  assert.deepEqual(reg.removeGroup("lab", { id: "new" }), []);
  assert.deepEqual(reg.removeGroup("nope", successor), []);
});

Deno.test("removeGroup frees every port of the group", () => {
  const reg = registry([1000, 1004]);
  const s = { id: "s" };
  reg.addGroup("lab", s);
  reg.claim("lab", "a", 1001);
  reg.claim("lab", "b", 1003);
  reg.addGroup("other", { id: "o" });
  reg.claim("other", "c", 1004);
  const released = reg.removeGroup("lab", s);
  assert.deepEqual(released.map((a) => [a.group, a.app, a.port]), [
    ["lab", "a", 1001],
    ["lab", "b", 1003],
  ]);
  assert.equal(reg.group("lab"), undefined);
  assert.deepEqual(reg.freeRanges(), [[1000, 1003]]);
  assert.deepEqual(reg.candidates(1001), [1001]);
});

Deno.test("an explicit port outside the ranges is port_not_allowed", () => {
  const reg = registry([6000, 6100], [7022, 7022]);
  for (const port of [5999, 6101, 7021, 7023, 65535, 1]) {
    assert.deepEqual(reg.candidates(port), {
      code: "port_not_allowed",
      message: `port ${port} is outside the server's allowed ports`,
    });
  }
  assert.deepEqual(reg.candidates(6000), [6000]);
  assert.deepEqual(reg.candidates(6100), [6100]);
  assert.deepEqual(
    reg.candidates(7022, 6050),
    [7022],
    "the hint does not matter for explicit ports",
  );
  assert.equal(reg.allowed(7022), true);
  assert.equal(reg.allowed(7021), false);
});

Deno.test("an explicit port that is claimed is port_taken, naming the owner", () => {
  const reg = registry([6000, 6100]);
  reg.addGroup("home-lab", { id: "s" });
  reg.claim("home-lab", "ssh", 6022);
  assert.deepEqual(reg.candidates(6022), {
    code: "port_taken",
    message: "port 6022 is taken by home-lab/ssh",
  });
  reg.release("home-lab", "ssh");
  assert.deepEqual(reg.candidates(6022), [6022]);
});

Deno.test("a server-picked port puts a free hint first and lists only free allowed ports", () => {
  const reg = registry([2000, 2009], [3000, 3004]);
  reg.addGroup("g", { id: "s" });
  reg.claim("g", "x", 2003);
  reg.claim("g", "y", 3000);
  for (let i = 0; i < 20; i++) {
    const got = reg.candidates(0, 2005);
    assert.ok(!isRefusal(got));
    assert.equal(got[0], 2005, "the hint comes first");
    assert.equal(new Set(got).size, got.length, "no port twice");
    // 15 allowed, 2 claimed: 13 free, all of which fit in the tries.
    assert.deepEqual(
      [...got].sort((a, b) => a - b),
      [2000, 2001, 2002, 2004, 2005, 2006, 2007, 2008, 2009, 3001, 3002, 3003, 3004],
    );
  }
});

Deno.test("a hint that is taken or not allowed is skipped", () => {
  const reg = registry([2000, 2002]);
  reg.addGroup("g", { id: "s" });
  reg.claim("g", "x", 2001);
  for (const hint of [2001, 1999, 9000, 0, undefined]) {
    const got = reg.candidates(0, hint);
    assert.ok(!isRefusal(got));
    assert.deepEqual([...got].sort(), [2000, 2002], `hint ${hint}`);
  }
});

Deno.test("server-picked candidates are random and capped for large ranges", () => {
  const reg = registry([10000, 20000]);
  const firsts = new Set<number>();
  for (let i = 0; i < 10; i++) {
    const got = reg.candidates(0, 15000);
    assert.ok(!isRefusal(got));
    assert.equal(got[0], 15000);
    assert.ok(got.length >= 2 && got.length <= 65, `got ${got.length} candidates`);
    assert.equal(new Set(got).size, got.length);
    for (const p of got) assert.ok(p >= 10000 && p <= 20000);
    firsts.add(got[1] as number);
  }
  assert.ok(firsts.size > 1, "the picks after the hint vary");
});

Deno.test("no_free_port when every allowed port is claimed", () => {
  const reg = registry([4000, 4001], [4005, 4005]);
  reg.addGroup("g", { id: "s" });
  reg.claim("g", "a", 4000);
  reg.claim("g", "b", 4001);
  assert.deepEqual(reg.candidates(0, 4005), [4005]);
  reg.claim("g", "c", 4005);
  const refusal = {
    code: "no_free_port",
    message: "no free port is left in the server's allowed ports",
  };
  assert.deepEqual(reg.candidates(0), refusal);
  assert.deepEqual(reg.candidates(0, 4001), refusal);
  assert.deepEqual(reg.freeRanges(), []);
});

Deno.test("claim records the app and refuses duplicates; release frees the port", () => {
  const reg = registry([5000, 5010]);
  assert.throws(() => reg.claim("ghost", "a", 5000), /group "ghost" is not live/);
  reg.addGroup("g", { id: "s" });
  reg.addGroup("h", { id: "t" });
  const before = Date.now();
  const entry = reg.claim("g", "web", 5005);
  assert.equal(entry.group, "g");
  assert.equal(entry.app, "web");
  assert.equal(entry.port, 5005);
  assert.ok(entry.since.getTime() >= before && entry.since.getTime() <= Date.now());
  assert.equal(reg.group("g")?.apps.get("web"), entry);
  assert.throws(() => reg.claim("g", "web", 5006), /app "g\/web" is already exposed/);
  assert.throws(() => reg.claim("h", "web", 5005), /port 5005 is already claimed/);
  assert.equal(reg.group("h")?.apps.size, 0, "failed claims leave no trace");
  assert.equal(reg.release("g", "web"), entry);
  assert.equal(reg.release("g", "web"), undefined, "released once only");
  assert.equal(reg.release("nope", "web"), undefined);
  assert.equal(reg.group("g")?.apps.size, 0);
  assert.equal(reg.claim("h", "web", 5005).port, 5005, "the port is free again");
});

Deno.test("freeRanges merges adjacent and overlapping ranges and skips claimed ports", () => {
  // Given out of order, overlapping and touching.
  const reg = registry([30, 35], [10, 12], [13, 15], [14, 20], [40, 40], [22, 22]);
  assert.deepEqual(reg.freeRanges(), [[10, 20], [22, 22], [30, 35], [40, 40]]);
  reg.addGroup("g", { id: "s" });
  reg.claim("g", "a", 10);
  reg.claim("g", "b", 15);
  reg.claim("g", "c", 35);
  reg.claim("g", "d", 40);
  assert.deepEqual(reg.freeRanges(), [[11, 14], [16, 20], [22, 22], [30, 34]]);
  reg.release("g", "b");
  assert.deepEqual(reg.freeRanges(), [[11, 20], [22, 22], [30, 34]]);
});

Deno.test("a shared group has several members; each leaving removes only itself", () => {
  const reg = registry([1000, 1010]);
  const [s1, s2, s3] = [{ id: "s1" }, { id: "s2" }, { id: "s3" }];
  const entry = reg.addGroup("farm", s1, true);
  assert.equal(reg.addGroup("farm", s2, true), entry);
  reg.addGroup("farm", s3, true);
  assert.deepEqual(entry.members, [s1, s2, s3]);
  assert.equal(reg.size, 1);
  assert.throws(() => reg.addGroup("farm", { id: "lone" }), /already live/, "not shared: refused");
  const solo = registry([1000, 1010]);
  solo.addGroup("lab", s1);
  assert.throws(
    () => solo.addGroup("lab", s2, true),
    /already live/,
    "a non-shared group takes none",
  );
  const app = reg.claim("farm", "web", 1005);
  assert.deepEqual(reg.removeGroup("farm", s1), [], "others remain: nothing released");
  assert.equal(entry.session, s2, "the oldest remaining member leads");
  assert.deepEqual(reg.removeGroup("farm", s1), [], "a second removal does nothing");
  reg.removeGroup("farm", s2);
  assert.deepEqual(reg.removeGroup("farm", s3), [app], "the last member frees the ports");
  assert.equal(reg.group("farm"), undefined);
  assert.equal(reg.size, 0);
});

Deno.test("release with a record frees the port only if it is still that record's", () => {
  const reg = registry([1000, 1010]);
  reg.addGroup("lab", { id: "s1" });
  const old = reg.claim("lab", "web", 1001);
  reg.release("lab", "web", old);
  const fresh = reg.claim("lab", "web", 1002);
  assert.equal(reg.release("lab", "web", old), undefined, "a stale record frees nothing");
  assert.equal(reg.release("lab", "web", fresh), fresh);
});

Deno.test("udp and tcp claims of one port number are apart, from the same ranges", () => {
  const reg = registry([1000, 1001]);
  const lab = { id: "s1" };
  reg.addGroup("lab", lab);
  reg.addGroup("home", { id: "s2" });
  reg.claim("lab", "dns", 1000, undefined, "udp");
  const tcp = reg.candidates(1000);
  assert.deepEqual(tcp, [1000], "the tcp port 1000 is still free");
  const udp = reg.candidates(1000, undefined, undefined, "udp");
  assert.ok(isRefusal(udp));
  assert.equal(udp.code, "port_taken");
  assert.match(udp.message, /udp port 1000 is taken by lab\/dns/);
  const outside = reg.candidates(2000, undefined, undefined, "udp");
  assert.ok(isRefusal(outside) && outside.code === "port_not_allowed");
  assert.deepEqual(reg.candidates(0, undefined, undefined, "udp"), [1001]);
  const web = reg.claim("home", "ssh", 1000);
  assert.equal(web.transport, undefined);
  assert.deepEqual(reg.freeRanges(), [[1001, 1001]], "free_ports lists tcp ports");
  // Releasing the udp app frees the udp claim only.
  assert.equal(reg.release("lab", "dns")?.transport, "udp");
  assert.deepEqual(reg.candidates(1000, undefined, undefined, "udp"), [1000]);
  assert.ok(isRefusal(reg.candidates(1000)));
  reg.claim("lab", "dns", 1000, undefined, "udp");
  assert.deepEqual(reg.removeGroup("lab", lab).map((a) => a.transport), ["udp"]);
  assert.deepEqual(reg.candidates(1000, undefined, undefined, "udp"), [1000]);
});
