/**
 * The pieces behind the dashboard, without sockets: the exposition writer
 * (checked by real Prometheus parsers, which must also reject broken text),
 * the histogram, the event ring buffer, traffic counting and sampling, and
 * the monitor's bookkeeping of groups going offline and coming back.
 */

import assert from "node:assert/strict";
import { EventLog } from "../../lib/dashboard/events.ts";
import { RingBuffer } from "../../lib/util/ring_buffer.ts";
import {
  Histogram,
  type MetricFamily,
  negotiateFormat,
  renderExposition,
} from "../../lib/dashboard/metrics.ts";
import { type MonitoredSession, ServerMonitor } from "../../lib/dashboard/monitor.ts";
import type { AppEntry } from "../../lib/protocol/services.ts";
import { TrafficCounter, TrafficHistory } from "../../lib/tunnel/traffic.ts";
import { parseNpm, parseReference, referencePython } from "../helpers/prom_parse.ts";

const skipNote = referencePython.missing ? ` (skipped: ${referencePython.missing})` : "";

/** Families with every awkward case: escapes, a histogram, a counter, floats, infinities. */
function awkwardFamilies(): MetricFamily[] {
  const h = new Histogram([0.1, 1, 10]);
  for (const v of [0.05, 0.5, 0.5, 5, 50]) h.observe(v);
  return [
    {
      name: "t_bytes",
      help: 'bytes "quoted" with a \\ backslash\nand a newline',
      type: "counter",
      samples: [
        { labels: { group: 'we"ird\\na\nme', app: "x" }, value: 12 },
        { labels: { group: "plain", app: "y" }, value: 0 },
      ],
    },
    { name: "t_gauge", help: "a gauge", type: "gauge", samples: [{ value: 1.5 }] },
    {
      name: "t_inf",
      help: "infinities",
      type: "gauge",
      samples: [{ labels: { s: "p" }, value: Infinity }, { labels: { s: "n" }, value: -Infinity }],
    },
    { name: "t_wait_seconds", help: "waits", type: "histogram", samples: [h.sample()] },
  ];
}

Deno.test({
  name:
    `the exposition text parses with the reference parser, values and escapes intact${skipNote}`,
  ignore: referencePython.missing !== undefined,
  async fn() {
    for (const format of ["text", "openmetrics"] as const) {
      const families = await parseReference(renderExposition(awkwardFamilies(), format), format);
      const byName = new Map(families.map((f) => [f.name, f]));
      const bytes = byName.get("t_bytes");
      assert.equal(bytes?.type, "counter", format);
      assert.equal(bytes?.help, 'bytes "quoted" with a \\ backslash\nand a newline');
      assert.deepEqual(bytes?.samples[0], {
        name: "t_bytes_total",
        labels: { group: 'we"ird\\na\nme', app: "x" },
        value: 12,
      });
      const hist = byName.get("t_wait_seconds");
      assert.equal(hist?.type, "histogram");
      const buckets = hist?.samples.filter((s) => s.name === "t_wait_seconds_bucket")
        .map((s) => [Number(s.labels.le?.replace("+Inf", "Infinity")), s.value]);
      assert.deepEqual(buckets, [[0.1, 1], [1, 3], [10, 4], [Infinity, 5]]);
      const sum = hist?.samples.find((s) => s.name === "t_wait_seconds_sum")?.value;
      assert.ok(Math.abs((sum ?? 0) - 56.05) < 1e-9);
      const inf = byName.get("t_inf")?.samples.map((s) => s.value);
      assert.deepEqual(inf, [Infinity, -Infinity]);
    }
  },
});

Deno.test({
  name: `the reference parser rejects broken exposition text, so the tests can fail${skipNote}`,
  ignore: referencePython.missing !== undefined,
  async fn() {
    const good = renderExposition(awkwardFamilies(), "openmetrics");
    const broken = [
      good.replace("# EOF\n", ""), // no terminator
      good.replace('le="+Inf"', 'le="20"'), // no +Inf bucket
      good.replace('group="plain"', "group=plain"), // unquoted label value
      good.replace("t_gauge 1.5", "t_gauge one"), // not a number
      good.replace('we\\"ird', 'we"ird'), // unescaped quote
    ];
    for (const text of broken) {
      assert.notEqual(text, good, "the mutation must change the text");
      await assert.rejects(parseReference(text, "openmetrics"), /reference parser rejected/);
    }
    await assert.rejects(parseReference("1bad_name 3\n", "text"), /reference parser rejected/);
  },
});

Deno.test("the npm parser reads the text format too", () => {
  const families = parseNpm(renderExposition(awkwardFamilies(), "text"));
  assert.deepEqual(families.map((f) => [f.name, f.type]), [
    ["t_bytes_total", "COUNTER"],
    ["t_gauge", "GAUGE"],
    ["t_inf", "GAUGE"],
    ["t_wait_seconds", "HISTOGRAM"],
  ]);
  assert.throws(() => parseNpm("t{a=unquoted} 1\n"));
});

Deno.test("the writer refuses names the format does not allow", () => {
  const bad = (name: string, label = "ok"): MetricFamily[] => [
    { name, help: "", type: "gauge", samples: [{ labels: { [label]: "v" }, value: 1 }] },
  ];
  assert.throws(() => renderExposition(bad("1x"), "text"), /bad metric name/);
  assert.throws(() => renderExposition(bad("a-b"), "text"), /bad metric name/);
  assert.throws(() => renderExposition(bad("ok", "le-x"), "text"), /bad label name/);
  assert.throws(() => renderExposition(bad("ok", "__x"), "text"), /bad label name/);
});

Deno.test("OpenMetrics is served only to scrapers that ask for it", () => {
  assert.equal(negotiateFormat(null), "text");
  assert.equal(negotiateFormat("text/plain;version=0.0.4;q=0.9,*/*;q=0.1"), "text");
  assert.equal(
    negotiateFormat("application/openmetrics-text;version=1.0.0;q=0.75,text/plain;q=0.5"),
    "openmetrics",
  );
});

Deno.test("a histogram counts cumulatively and requires ascending bounds", () => {
  const h = new Histogram([1, 2]);
  h.observe(1);
  h.observe(1.5);
  h.observe(3);
  assert.deepEqual(h.sample().cumulative, [1, 2]);
  assert.equal(h.sample().count, 3);
  assert.equal(h.sample().sum, 5.5);
  assert.throws(() => new Histogram([2, 1]), /ascend/);
});

Deno.test("the ring buffer keeps the newest items in order", () => {
  const ring = new RingBuffer<number>(3);
  assert.deepEqual(ring.toArray(), []);
  for (let i = 1; i <= 5; i++) ring.push(i);
  assert.deepEqual(ring.toArray(), [3, 4, 5]);
  assert.equal(ring.size, 3);
});

Deno.test("the event log is bounded, numbered, and tells its listeners", () => {
  const log = new EventLog(2);
  const heard: number[] = [];
  const stop = log.subscribe((e) => heard.push(e.id));
  for (const group of ["a", "b", "c"]) log.add({ kind: "connect", group, message: group });
  stop();
  log.add({ kind: "disconnect", group: "a", message: "gone" });
  assert.deepEqual(heard, [1, 2, 3]);
  assert.deepEqual(log.list().map((e) => e.id), [3, 4]);
  assert.deepEqual(log.list(3).map((e) => e.message), ["gone"]);
});

Deno.test("a traffic counter counts live and finished connections", () => {
  const counter = new TrafficCounter();
  const a = counter.open();
  const b = counter.open();
  a.aToB = 10;
  b.bToA = 7;
  assert.deepEqual(counter.bytes(), { bytesIn: 10, bytesOut: 7 });
  counter.close(a);
  counter.close(a); // twice is once
  a.aToB = 999; // after close it no longer counts
  assert.equal(counter.connections, 1);
  assert.equal(counter.total, 2);
  assert.deepEqual(counter.bytes(), { bytesIn: 10, bytesOut: 7 });
});

Deno.test("traffic history samples rates, is bounded, and forgets keys not sampled", () => {
  const history = new TrafficHistory(3);
  const t0 = 1_000_000;
  history.beginRound();
  history.record("g/a", { bytesIn: 0, bytesOut: 0 }, t0);
  history.endRound();
  for (let i = 1; i <= 4; i++) {
    history.beginRound();
    history.record("g/a", { bytesIn: i * 1000, bytesOut: i * 500 }, t0 + i * 1000);
    history.endRound();
  }
  assert.deepEqual(history.series("g/a"), { in: [1000, 1000, 1000], out: [500, 500, 500] });
  assert.equal(history.changedAt("g/a"), t0 + 4000);
  // A counter that starts afresh is no traffic, not a negative rate.
  history.beginRound();
  history.record("g/a", { bytesIn: 0, bytesOut: 0 }, t0 + 5000);
  history.endRound();
  assert.deepEqual(history.series("g/a").in, [1000, 1000, 0]);
  history.beginRound();
  history.endRound();
  assert.deepEqual(history.series("g/a"), { in: [], out: [] });
});

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
