/** The client's server list: passes, address expansion, rotation after a loss. */

import assert from "node:assert/strict";
import { describeCandidate, type Lookup, ServerList } from "../../lib/client/servers.ts";
import { formatHostPort } from "../../lib/util/addr.ts";

const hp = (hostname: string, port = 7700) => ({ hostname, port });
const at = (list: ServerList) => formatHostPort(list.current.at);

async function take(list: ServerList, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(formatHostPort((await list.next()).at));
  return out;
}

Deno.test("servers are tried in order, round and round, one pass at a time", async () => {
  const list = new ServerList([hp("192.0.2.1"), hp("192.0.2.2"), hp("2001:db8::3")], undefined);
  assert.equal(at(list), "192.0.2.1:7700", "before any try: the first server");
  assert.deepEqual(await take(list, 2), ["192.0.2.1:7700", "192.0.2.2:7700"]);
  assert.equal(list.passDone, false);
  assert.deepEqual(await take(list, 1), ["[2001:db8::3]:7700"]);
  assert.equal(list.passDone, true);
  assert.deepEqual(await take(list, 1), ["192.0.2.1:7700"], "a new pass starts over");
});

Deno.test("after a loss the next pass starts past the lost server and ends with it", async () => {
  const list = new ServerList([hp("192.0.2.1"), hp("192.0.2.2"), hp("192.0.2.3")], undefined);
  await take(list, 2); // .1 failed, .2 reached
  list.moveOn(); // .2 is lost
  assert.deepEqual(await take(list, 3), ["192.0.2.3:7700", "192.0.2.1:7700", "192.0.2.2:7700"]);
  assert.equal(list.passDone, true);
});

Deno.test("a name with several addresses is each of them, looked up afresh each pass", async () => {
  let answers = [["127.0.0.2", "127.0.0.3"], ["127.0.0.4"]];
  const asked: string[] = [];
  const lookup: Lookup = (name) => {
    asked.push(name);
    const next = answers[0]!;
    if (answers.length > 1) answers = answers.slice(1);
    return Promise.resolve(next);
  };
  const list = new ServerList([hp("nodes.test"), hp("192.0.2.9", 7701)], lookup);
  const first = await list.next();
  assert.deepEqual(first.name, hp("nodes.test"), "TLS verifies and lines show the name");
  assert.equal(describeCandidate(first), "nodes.test:7700 (127.0.0.2:7700)");
  assert.deepEqual(await take(list, 2), ["127.0.0.3:7700", "192.0.2.9:7701"]);
  assert.equal(list.passSize, 3);
  assert.deepEqual(
    await take(list, 2),
    ["127.0.0.4:7700", "192.0.2.9:7701"],
    "the DNS change is seen",
  );
  assert.deepEqual(asked, ["nodes.test", "nodes.test"], "IP literals are never looked up");
});

Deno.test("a name that does not resolve is dialled as it is, so the dial names the failure", async () => {
  const list = new ServerList(
    [hp("nowhere.invalid")],
    () => Promise.reject(new Error("ENOTFOUND")),
  );
  const c = await list.next();
  assert.equal(c.at, c.name);
  assert.equal(describeCandidate(c), "nowhere.invalid:7700");
});

Deno.test("duplicate addresses of a name are tried once, at most eight of them", async () => {
  const many = Array.from({ length: 20 }, (_, i) => `10.0.0.${i % 10}`);
  const list = new ServerList([hp("big.test")], () => Promise.resolve(many));
  await list.next();
  assert.equal(list.passSize, 8);
});

Deno.test("a list needs at least one server", () => {
  assert.throws(() => new ServerList([], undefined), /at least one server/);
});
