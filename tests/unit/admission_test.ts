/**
 * Admission of a `hello` into a live group (`lib/server/admission.ts`):
 * a shared group takes more clients; the same client reconnecting (its run
 * id) replaces only its own old replica; a shared client and a non-shared
 * one do not mix while the other answers a ping, and are told why.
 */

import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { Admission, type Incumbent, isRefusal } from "../../lib/server/admission.ts";
import { DEFAULT_LIMITS } from "../../lib/config/limits.ts";
import { SourceGuard } from "../../lib/util/source_guard.ts";
import { RareLog } from "../../lib/util/rare_log.ts";
import type { Hello } from "../../lib/protocol/protocol.ts";

/** A live session as admission sees it: it answers pings (or not) and can be ended. */
class Member implements Incumbent {
  ended: string | undefined;
  /** Resolves when `release` is called: the ended session's ports are free. */
  readonly done: Promise<void>;
  release!: () => void;
  /** `holdPorts`: the session's ports stay busy after it ends, until `release`. */
  constructor(
    readonly runId: string,
    readonly clientAddr: string,
    readonly alive: boolean,
    readonly group: { shared: boolean; members: Member[] },
    readonly holdPorts = false,
  ) {
    group.members.push(this);
    this.done = new Promise((resolve) => this.release = resolve);
  }
  probe(): Promise<boolean> {
    return Promise.resolve(this.alive);
  }
  end(reason: string): void {
    this.ended = reason;
    this.group.members = this.group.members.filter((m) => m !== this);
    if (!this.holdPorts) this.release();
  }
}

function admission(group: { shared: boolean; members: Member[] }): Admission {
  const log = getLogger(["burrow", "test"]);
  return new Admission({
    guard: new SourceGuard(DEFAULT_LIMITS),
    limits: DEFAULT_LIMITS,
    log,
    rare: new RareLog(log),
    hooks: {},
    credentials: () => undefined,
    token: undefined,
    live: () => group.members.length > 0 ? group : undefined,
    liveGroups: () => 1,
    closing: () => false,
  });
}

const run = (n: number) => n.toString(16).padStart(32, "0");
const hello = (runId: string, shared: boolean): Hello => ({
  type: "hello",
  version: 5,
  client: "burrow-client test",
  group: "farm",
  runId,
  proof: "0".repeat(64),
  ...(shared ? { shared: true } : {}),
});

Deno.test("a shared group admits another client; its own reconnect replaces only its replica", async () => {
  const group = { shared: true, members: [] as Member[] };
  const a = new Member(run(1), "10.0.0.1:1", true, group);
  const b = new Member(run(2), "10.0.0.2:1", true, group);
  const gate = admission(group);
  assert.ok(!isRefusal(await gate.register(hello(run(3), true), "10.0.0.3:1", undefined)));
  assert.equal(a.ended, undefined);
  assert.equal(b.ended, undefined);
  assert.ok(!isRefusal(await gate.register(hello(run(2), true), "10.0.0.2:2", undefined)));
  assert.equal(b.ended, "replaced by the same client reconnecting");
  assert.equal(a.ended, undefined, "the other replica stays");
});

Deno.test("a non-shared client meeting a shared group, and the reverse, is refused with why", async () => {
  const shared = { shared: true, members: [] as Member[] };
  new Member(run(1), "10.0.0.1:1", true, shared);
  const lone = await admission(shared).register(hello(run(9), false), "10.0.0.9:1", undefined);
  assert.ok(isRefusal(lone));
  assert.equal(lone.code, "group_live");
  assert.match(lone.message, /shared by 1 client.* does not share it: set shared: true/);
  const single = { shared: false, members: [] as Member[] };
  new Member(run(1), "10.0.0.1:1", true, single);
  const joiner = await admission(single).register(hello(run(9), true), "10.0.0.9:1", undefined);
  assert.ok(isRefusal(joiner));
  assert.match(joiner.message, /a client that does not share it \(10\.0\.0\.1:1\)/);
});

Deno.test("a group whose clients all stopped answering is taken over whole", async () => {
  const group = { shared: true, members: [] as Member[] };
  const a = new Member(run(1), "10.0.0.1:1", false, group);
  const b = new Member(run(2), "10.0.0.2:1", false, group);
  const decision = await admission(group).register(hello(run(9), false), "10.0.0.9:1", undefined);
  assert.ok(!isRefusal(decision));
  assert.match(a.ended ?? "", /did not answer a ping/);
  assert.match(b.ended ?? "", /did not answer a ping/);
});

Deno.test("a takeover admits the new client only once the old session's ports are free", async () => {
  const group = { shared: false, members: [] as Member[] };
  const old = new Member(run(1), "10.0.0.1:1", false, group, true);
  let admitted = false;
  const decision = admission(group).register(hello(run(9), false), "10.0.0.9:1", undefined)
    .then((d) => (admitted = true, d));
  // The probe fails at once; admission has ended the old session but must wait for its ports.
  for (let i = 0; i < 20 && old.ended === undefined; i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.match(old.ended ?? "", /did not answer a ping/);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(admitted, false, "admitted while the old session still held its ports");
  old.release();
  assert.ok(!isRefusal(await decision));
});
