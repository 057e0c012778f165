/**
 * Metrics in the Prometheus text exposition format (version 0.0.4) and in
 * OpenMetrics 1.0, which Prometheus asks for first. This module knows
 * nothing of burrow: it holds a histogram and writes metric families out.
 * What burrow counts, and when, lives in `monitor.ts`.
 *
 * Counters are named without `_total` here (`burrow_auth_failures`): the
 * writer adds the suffix to samples, and to the family name too in the
 * 0.0.4 format, where that is the convention.
 *
 * @module
 */

/** The kinds of metric burrow exposes. */
export type MetricType = "counter" | "gauge" | "histogram";

/** Label names to values. */
export type Labels = Readonly<Record<string, string>>;

/** One counter or gauge series. */
export interface Sample {
  labels?: Labels;
  value: number;
}

/** One histogram series: cumulative counts per upper bound, then sum and count. */
export interface HistogramSample {
  labels?: Labels;
  /** Upper bounds, ascending, without +Inf. */
  bounds: readonly number[];
  /** Cumulative counts, one per bound. */
  cumulative: readonly number[];
  sum: number;
  count: number;
}

/** A metric family: one name, help text, type and its series. */
export type MetricFamily =
  | { name: string; help: string; type: "counter" | "gauge"; samples: Sample[] }
  | { name: string; help: string; type: "histogram"; samples: HistogramSample[] };

/** Which exposition format to write. */
export type ExpositionFormat = "text" | "openmetrics";

/** The Content-Type of each format. */
export const CONTENT_TYPES: Readonly<Record<ExpositionFormat, string>> = {
  text: "text/plain; version=0.0.4; charset=utf-8",
  openmetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8",
};

/** OpenMetrics when the scraper's `Accept` header offers it, as Prometheus does; else text. */
export function negotiateFormat(accept: string | null): ExpositionFormat {
  return accept !== null && /application\/openmetrics-text/i.test(accept) ? "openmetrics" : "text";
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Writes families in the chosen format. Throws on a metric or label name
 * the format does not allow (a programming error, never a peer's input:
 * label values are escaped, so group and app names are safe).
 */
export function renderExposition(
  families: readonly MetricFamily[],
  format: ExpositionFormat,
): string {
  const out: string[] = [];
  for (const family of families) {
    if (!METRIC_NAME.test(family.name)) throw new Error(`bad metric name "${family.name}"`);
    const counter = family.type === "counter";
    const header = counter && format === "text" ? `${family.name}_total` : family.name;
    out.push(`# HELP ${header} ${escapeHelp(family.help, format)}`);
    out.push(`# TYPE ${header} ${family.type}`);
    if (family.type === "histogram") {
      for (const s of family.samples) writeHistogram(out, family.name, s, format);
    } else {
      const name = counter ? `${family.name}_total` : family.name;
      for (const s of family.samples) out.push(`${name}${labelText(s.labels)} ${num(s.value)}`);
    }
  }
  if (format === "openmetrics") out.push("# EOF");
  return out.join("\n") + "\n";
}

function writeHistogram(
  out: string[],
  name: string,
  s: HistogramSample,
  format: ExpositionFormat,
): void {
  s.bounds.forEach((bound, i) => {
    // OpenMetrics wants canonical floats in `le` ("1.0", not "1").
    const text = format === "openmetrics" && Number.isInteger(bound) ? `${bound}.0` : num(bound);
    const le = { ...s.labels, le: text };
    out.push(`${name}_bucket${labelText(le)} ${num(s.cumulative[i] ?? 0)}`);
  });
  out.push(`${name}_bucket${labelText({ ...s.labels, le: "+Inf" })} ${num(s.count)}`);
  out.push(`${name}_sum${labelText(s.labels)} ${num(s.sum)}`);
  out.push(`${name}_count${labelText(s.labels)} ${num(s.count)}`);
}

function labelText(labels: Labels | undefined): string {
  if (labels === undefined) return "";
  const parts: string[] = [];
  for (const [key, value] of Object.entries(labels)) {
    if (!LABEL_NAME.test(key) || key.startsWith("__")) throw new Error(`bad label name "${key}"`);
    parts.push(`${key}="${escapeLabel(value)}"`);
  }
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** Label values escape backslash, double quote and line feed, in both formats. */
function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

/** HELP escapes backslash and line feed; OpenMetrics also the double quote. */
function escapeHelp(text: string, format: ExpositionFormat): string {
  const re = format === "openmetrics" ? /[\\"\n]/g : /[\\\n]/g;
  return text.replace(re, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

/** A number as both formats spell it. */
function num(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** Work-connection waits: from a pooled hand-off (well under 1 ms) to the 10 s timeout. */
export const WAIT_BUCKETS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/** A histogram with fixed upper bounds; observing is a short scan, no allocation. */
export class Histogram {
  readonly bounds: readonly number[];
  #counts: number[];
  #sum = 0;
  #count = 0;

  /** @param bounds Upper bounds, ascending (+Inf is implied). */
  constructor(bounds: readonly number[]) {
    for (let i = 1; i < bounds.length; i++) {
      if (!((bounds[i] as number) > (bounds[i - 1] as number))) {
        throw new Error("histogram bounds must ascend");
      }
    }
    this.bounds = bounds;
    this.#counts = bounds.map(() => 0);
  }

  /** Records one value. */
  observe(value: number): void {
    const at = this.bounds.findIndex((b) => value <= b);
    if (at >= 0) this.#counts[at] = (this.#counts[at] as number) + 1;
    this.#sum += value;
    this.#count++;
  }

  /** The histogram as a sample, with cumulative counts. */
  sample(labels?: Labels): HistogramSample {
    let running = 0;
    const cumulative = this.#counts.map((n) => running += n);
    const s: HistogramSample = {
      bounds: this.bounds,
      cumulative,
      sum: this.#sum,
      count: this.#count,
    };
    if (labels !== undefined) s.labels = labels;
    return s;
  }
}
