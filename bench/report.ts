/**
 * The tunnel benchmark's output: a table on stdout (direct, tunnel, ratio,
 * target, pass or fail) and the JSON document written to
 * `bench-results.json` with every figure behind it.
 *
 * @module
 */

import type { Memory } from "./child.ts";
import { type BulkResult, type HeldResult, type LatencyResult, percentile } from "./phases.ts";

/** The pass/fail targets. */
export const TARGETS = {
  /** Tunnel MiB/s over direct MiB/s, each direction: at least. */
  throughputRatio: 0.45,
  /** Tunnel p50 connect+echo over direct p50: at most. */
  latencyP50Ratio: 2.5,
  /** Failed connections, transfers or echoes, both paths, all phases. */
  errors: 0,
};

/** Memory of each measured process at one moment, by name (server, client, sink). */
export type Snapshot = Record<string, Memory>;

/** Everything one run measured. */
export interface Figures {
  up: BulkResult;
  down: BulkResult;
  latency: LatencyResult;
  heldDirect: HeldResult;
  heldTunnel: HeldResult;
  heldConns: number;
  memory: {
    start: Snapshot;
    beforeHeld: Snapshot;
    heldDirect: Snapshot;
    heldTunnel: Snapshot;
    afterRelease: Snapshot;
  };
  /** Wall time of the measurements, s. */
  seconds: number;
  /** Average cores other user processes kept busy during the run (a lower bound). */
  otherCores: number;
  /** Average cores the hypervisor took (steal) during the run. */
  stealCores: number;
}

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 0.5);

/** The figures the targets judge, and the verdicts. */
export function judge(f: Figures) {
  const upRatio = median(f.up.tunnel) / median(f.up.direct);
  const downRatio = median(f.down.tunnel) / median(f.down.direct);
  const p50Ratio = percentile(f.latency.tunnel, 0.5) / percentile(f.latency.direct, 0.5);
  const errors = f.up.errors.count + f.down.errors.count + f.latency.errors.direct.count +
    f.latency.errors.tunnel.count + f.heldDirect.errors.count + f.heldTunnel.errors.count;
  const pass = {
    upload: upRatio >= TARGETS.throughputRatio,
    download: downRatio >= TARGETS.throughputRatio,
    latency: p50Ratio <= TARGETS.latencyP50Ratio,
    errors: errors <= TARGETS.errors,
  };
  return { upRatio, downRatio, p50Ratio, errors, pass, all: Object.values(pass).every((p) => p) };
}

interface Row {
  figure: string;
  direct: string;
  tunnel: string;
  ratio: string;
  target: string;
  result: string;
}

const f1 = (x: number) => Number.isFinite(x) ? x.toFixed(1) : "-";
const f2 = (x: number) => Number.isFinite(x) ? x.toFixed(2) : "-";
/** Judged ratios get three digits, so a FAIL never shows as the target itself. */
const f3 = (x: number) => Number.isFinite(x) ? x.toFixed(3) : "-";
const f0 = (x: number) => Number.isFinite(x) ? x.toFixed(0) : "-";
const us = (ms: number) => Number.isFinite(ms) ? `${Math.round(ms * 1000)} µs` : "-";
const mib = (m: Memory | undefined) => f1((m?.rssKiB ?? NaN) / 1024);
const withSpread = (xs: number[]) =>
  f1(median(xs)) + (xs.length > 1 ? ` (${f1(Math.min(...xs))}-${f1(Math.max(...xs))})` : "");

function row(
  figure: string,
  direct: string,
  tunnel: string,
  ratio = "",
  target = "",
  pass?: boolean,
): Row {
  return {
    figure,
    direct,
    tunnel,
    ratio,
    target,
    result: pass === undefined ? "" : pass ? "PASS" : "FAIL",
  };
}

function rows(f: Figures): Row[] {
  return [...throughputRows(f), ...latencyRows(f), ...heldRows(f), errorRow(f)];
}

/** "server + client" figures of a per-process record. */
const srvCli = (r: Record<string, number>, digits: (x: number) => string) =>
  `${digits(r.server ?? NaN)} + ${digits(r.client ?? NaN)}`;

function throughputRows(f: Figures): Row[] {
  const v = judge(f);
  return [
    row(
      "upload MiB/s, median (min-max)",
      withSpread(f.up.direct),
      withSpread(f.up.tunnel),
      f3(v.upRatio),
      `>= ${TARGETS.throughputRatio}`,
      v.pass.upload,
    ),
    row(
      "download MiB/s, median (min-max)",
      withSpread(f.down.direct),
      withSpread(f.down.tunnel),
      f3(v.downRatio),
      `>= ${TARGETS.throughputRatio}`,
      v.pass.download,
    ),
    row("tunnel CPU s/GiB up (srv + cli)", "", srvCli(f.up.cpuPerGiB, f2)),
    row("tunnel CPU s/GiB down (srv + cli)", "", srvCli(f.down.cpuPerGiB, f2)),
  ];
}

function latencyRows(f: Figures): Row[] {
  const v = judge(f);
  const { direct, tunnel } = f.latency;
  return [
    row(
      `connect+echo p50 (n=${direct.length}/${tunnel.length})`,
      us(percentile(direct, 0.5)),
      us(percentile(tunnel, 0.5)),
      f3(v.p50Ratio),
      `<= ${TARGETS.latencyP50Ratio}`,
      v.pass.latency,
    ),
    row(
      "connect+echo p99",
      us(percentile(direct, 0.99)),
      us(percentile(tunnel, 0.99)),
      f2(percentile(tunnel, 0.99) / percentile(direct, 0.99)),
    ),
    row("tunnel CPU µs/conn (srv + cli)", "", srvCli(f.latency.cpuPerConnMicros, f0)),
  ];
}

function heldRows(f: Figures): Row[] {
  const m = f.memory;
  const n = f.heldConns;
  const kib = (s: Snapshot, name: string) => s[name]?.rssKiB ?? NaN;
  const perHeld = (kib(m.heldTunnel, "server") + kib(m.heldTunnel, "client") -
    kib(m.beforeHeld, "server") - kib(m.beforeHeld, "client")) / n;
  const rss = (name: string) =>
    `${mib(m.start[name])} / ${mib(m.beforeHeld[name])} / ${mib(m.heldTunnel[name])}`;
  const out = [
    row(
      `open ${n} held conns, ms`,
      f1(f.heldDirect.openMs),
      f1(f.heldTunnel.openMs),
      f2(f.heldTunnel.openMs / f.heldDirect.openMs),
    ),
    row(
      `echo on all ${n} held, ms`,
      f1(f.heldDirect.recheckMs),
      f1(f.heldTunnel.recheckMs),
      f2(f.heldTunnel.recheckMs / f.heldDirect.recheckMs),
    ),
    row("server RSS MiB start/idle/held", "", rss("server")),
    row("client RSS MiB start/idle/held", "", rss("client")),
    row("tunnel KiB per held conn (srv+cli)", "", f1(perHeld)),
  ];
  if (m.beforeHeld.sink) {
    const before = mib(m.beforeHeld.sink);
    const held = (s: Snapshot) => `${before} / ${mib(s.sink)}`;
    out.push(row("sink RSS MiB idle/held", held(m.heldDirect), held(m.heldTunnel)));
  }
  return out;
}

function errorRow(f: Figures): Row {
  const sum = (...es: Array<{ count: number }>) => `${es.reduce((a, e) => a + e.count, 0)}`;
  return row(
    "errors (bulk, latency, held)",
    sum(f.latency.errors.direct, f.heldDirect.errors),
    sum(f.latency.errors.tunnel, f.heldTunnel.errors),
    `bulk ${sum(f.up.errors, f.down.errors)}`,
    `${TARGETS.errors}`,
    judge(f).pass.errors,
  );
}

/** Prints the header lines, the table, the verdict and the first few errors. */
export function printReport(f: Figures, header: string[]): void {
  for (const line of header) console.log(line);
  console.log("");
  const table = rows(f);
  const head: Row = {
    figure: "figure",
    direct: "direct",
    tunnel: "tunnel",
    ratio: "tun/dir",
    target: "target",
    result: "",
  };
  const keys = Object.keys(head) as Array<keyof Row>;
  const width = (k: keyof Row) => Math.max(...[head, ...table].map((r) => r[k].length));
  const line = (r: Row) =>
    keys.map((k, i) => i === 0 ? r[k].padEnd(width(k)) : r[k].padStart(width(k))).join("  ")
      .trimEnd();
  console.log(line(head));
  console.log(keys.map((k) => "-".repeat(width(k))).join("  "));
  for (const r of table) console.log(line(r));
  const v = judge(f);
  console.log(`\ntargets: ${v.all ? "all met" : "NOT all met"}; measuring took ${f1(f.seconds)} s`);
  console.log(
    `other programs kept ${f2(f.otherCores)} cores busy during the run, the hypervisor took ` +
      `${f2(f.stealCores)}` +
      (f.otherCores + f.stealCores > 0.25
        ? " (figures are less reliable: run again on a quiet machine)"
        : ""),
  );
  const samples = [
    ...f.up.errors.samples,
    ...f.down.errors.samples,
    ...f.latency.errors.direct.samples,
    ...f.latency.errors.tunnel.samples,
    ...f.heldDirect.errors.samples,
    ...f.heldTunnel.errors.samples,
  ];
  for (const e of samples.slice(0, 10)) console.log(`  error: ${e}`);
}

function latencyStats(sorted: number[]) {
  return {
    n: sorted.length,
    min: sorted[0] ?? NaN,
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    max: sorted[sorted.length - 1] ?? NaN,
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
  };
}

/** The JSON document: `meta` (date, versions, settings...) then every figure. */
export function resultsJson(f: Figures, meta: Record<string, unknown>) {
  const v = judge(f);
  const bulk = (b: BulkResult, ratio: number) => ({
    ...b,
    medianDirect: median(b.direct),
    medianTunnel: median(b.tunnel),
    ratio,
  });
  return {
    ...meta,
    seconds: f.seconds,
    otherCores: f.otherCores,
    stealCores: f.stealCores,
    throughput: {
      unit: "MiB/s",
      upload: bulk(f.up, v.upRatio),
      download: bulk(f.down, v.downRatio),
    },
    latency: {
      unit: "ms from connect until the 1-byte echo is back",
      direct: latencyStats(f.latency.direct),
      tunnel: latencyStats(f.latency.tunnel),
      p50Ratio: v.p50Ratio,
      cpuPerConnMicros: f.latency.cpuPerConnMicros,
      errors: f.latency.errors,
    },
    held: { connections: f.heldConns, direct: f.heldDirect, tunnel: f.heldTunnel },
    memory: { unit: "KiB", ...f.memory },
    errors: v.errors,
    targets: {
      uploadRatio: { value: v.upRatio, min: TARGETS.throughputRatio, pass: v.pass.upload },
      downloadRatio: { value: v.downRatio, min: TARGETS.throughputRatio, pass: v.pass.download },
      latencyP50Ratio: { value: v.p50Ratio, max: TARGETS.latencyP50Ratio, pass: v.pass.latency },
      errors: { value: v.errors, max: TARGETS.errors, pass: v.pass.errors },
    },
    pass: v.all,
  };
}
