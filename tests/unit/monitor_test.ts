/**
 * The monitor's bookkeeping (`lib/dashboard/monitor.ts`): groups going offline
 * and coming back, and refusals counted by cause.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type MonitoredSession, ServerMonitor } from "../../lib/dashboard/monitor.ts";
import type { AppEntry } from "../../lib/protocol/services.ts";

/** A session stand-in for the monitor. */
function fakeSession(group: string, apps: Array<[string, number]>, addr = "192.0.2.7:4000") {
  const entries: AppEntry[] = apps.map(([app, port]) => ({ group, app, port, since: new Date() }));
  const session: MonitoredSession = {
    group,
    clientAddr: addr,
    clientVersion: "9.9.9",
    since: new Date(),
    stats: () => entries.map((entry) => ({ entry })),
  };
  return session;
}

Deno.test("the monitor keeps offline groups with their last address and totals", () => {
  const monitor = new ServerMonitor({ offlineGroups: 1 });
  const first = fakeSession("lab", [["web", 20001]]);
  monitor.groupOnline(first);
  const user = { aToB: 0, bToA: 0 };
  monitor.userOpened("lab", "web", user);
  user.aToB = 300;
  user.bToA = 4000;
  monitor.userClosed("lab", "web", user);
  monitor.groupOffline(first, "silent for 31s");
  const [lab] = monitor.groups();
  assert.equal(lab?.online, false);
  assert.equal(lab?.clientAddr, "192.0.2.7:4000");
  assert.equal(lab?.reason, "silent for 31s");
  assert.deepEqual(lab?.apps.map((a) => [a.name, a.port, a.bytesIn, a.bytesOut, a.online]), [
    ["web", 20001, 300, 4000, false],
  ]);
  // It comes back from another address: a reconnect, and the counters carry on.
  const second = fakeSession("lab", [["web", 20001]], "198.51.100.9:5000");
  monitor.groupOnline(second);
  const again = monitor.groups()[0];
  assert.equal(again?.online, true);
  assert.equal(again?.clientAddr, "198.51.100.9:5000");
  assert.equal(again?.apps[0]?.bytesOut, 4000);
  assert.deepEqual(monitor.events.list().map((e) => e.kind), [
    "connect",
    "disconnect",
    "reconnect",
  ]);
  // An ended session that was already replaced changes nothing.
  monitor.groupOffline(first, "late");
  assert.equal(monitor.groups()[0]?.online, true);
  // Only one offline group is remembered; server-wide totals keep the forgotten one's bytes.
  monitor.groupOffline(second, "bye");
  const other = fakeSession("other", []);
  monitor.groupOnline(other);
  monitor.groupOffline(other, "bye");
  assert.deepEqual(monitor.groups().map((g) => g.name), ["other"]);
  assert.equal(monitor.status().totals.bytesOut, 4000);
  assert.equal(monitor.status().totals.connectionsTotal, 1);
});

Deno.test("the monitor counts refusals by cause and auth failures among them", () => {
  const monitor = new ServerMonitor();
  monitor.refused("auth_failed", "authentication failed: wrong token", { addr: "192.0.2.1:1" });
  monitor.refused("port_taken", "port 7 is taken", { addr: "192.0.2.1:2", group: "g", app: "a" });
  monitor.refused("port_taken", "port 7 is taken", { addr: "192.0.2.1:3", group: "g", app: "a" });
  const text = monitor.metrics("text");
  assert.match(text, /^burrow_refusals_total\{cause="port_taken"\} 2$/m);
  assert.match(text, /^burrow_refusals_total\{cause="auth_failed"\} 1$/m);
  assert.match(text, /^burrow_refusals_total\{cause="group_live"\} 0$/m);
  assert.match(text, /^burrow_auth_failures_total 1$/m);
  assert.deepEqual(monitor.status().totals.refusals, 3);
  const last = monitor.events.list().at(-1);
  assert.deepEqual([last?.kind, last?.code, last?.group, last?.app], [
    "refused",
    "port_taken",
    "g",
    "a",
  ]);
});
