/**
 * The Prometheus exposition writer and the histogram (`lib/dashboard/metrics.ts`),
 * checked by real Prometheus parsers, which must also reject broken text.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  Histogram,
  type MetricFamily,
  negotiateFormat,
  renderExposition,
} from "../../lib/dashboard/metrics.ts";
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
