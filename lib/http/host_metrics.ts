/**
 * Per-host figures of the edge, for the dashboard's rows and `/metrics`:
 * requests by status class, body bytes each way and a latency histogram,
 * requests open now, for every name an app holds. Requests for names nobody holds are counted
 * together under the host `""`, so that strangers sending random `Host`
 * values cannot grow the label set.
 *
 * The families returned have the shape the dashboard's exposition writer
 * takes (`lib/dashboard/metrics.ts`); this layer does not import it.
 *
 * @module
 */

import type { EdgeRequestEvent } from "./proxy.ts";

/** Upper bounds of the latency histogram, in seconds. */
export const LATENCY_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Most hosts tracked apart; more are counted under `""`. */
export const MAX_HOSTS = 10_000;

const CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const;

/** One host's figures, as a dashboard row shows them. */
export interface HostRow {
  host: string;
  /** The app that answered last. */
  app?: string;
  requests: number;
  /** Requests forwarded to the app and not yet answered in full (WebSockets included). */
  open: number;
  byClass: Record<typeof CLASSES[number], number>;
  bytesIn: number;
  bytesOut: number;
  /** Milliseconds since the epoch of the last request. */
  lastAt: number;
}

interface Figures extends HostRow {
  buckets: number[];
  seconds: number;
}

/** A metric family in the shape the dashboard's writer takes. */
export type HostMetricFamily =
  | {
    name: string;
    help: string;
    type: "counter" | "gauge";
    samples: { labels: Record<string, string>; value: number }[];
  }
  | {
    name: string;
    help: string;
    type: "histogram";
    samples: {
      labels: Record<string, string>;
      bounds: readonly number[];
      cumulative: number[];
      sum: number;
      count: number;
    }[];
  };

/** Figures per host, fed by the edge's `observe`. */
export class HostMetrics {
  #hosts = new Map<string, Figures>();
  /** Requests counted open by {@linkcode HostMetrics.opened}, with the host they were counted under. */
  #open = new WeakMap<EdgeRequestEvent, Figures>();
  #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Counts a request forwarded to its app, open until {@linkcode HostMetrics.observe} sees it. */
  opened(event: EdgeRequestEvent): void {
    const f = this.#figures(event);
    f.open++;
    this.#open.set(event, f);
  }

  /** Counts one answered request. */
  observe(event: EdgeRequestEvent): void {
    const open = this.#open.get(event);
    if (open) {
      open.open--;
      this.#open.delete(event);
    }
    const f = this.#figures(event);
    if (event.routeId !== undefined && f.host !== "") f.app = event.routeId;
    f.requests++;
    const cls = CLASSES[Math.floor(event.status / 100) - 1];
    if (cls) f.byClass[cls]++;
    f.bytesIn += event.bytesIn;
    f.bytesOut += event.bytesOut;
    f.lastAt = this.#now();
    const s = event.ms / 1000;
    f.seconds += s;
    for (let i = 0; i < LATENCY_BOUNDS.length; i++) {
      if (s <= (LATENCY_BOUNDS[i] as number)) (f.buckets[i] as number)++;
    }
  }

  #figures(event: EdgeRequestEvent): Figures {
    let host = event.routeId === undefined ? "" : event.host;
    if (!this.#hosts.has(host) && this.#hosts.size >= MAX_HOSTS) host = "";
    let f = this.#hosts.get(host);
    if (!f) {
      f = {
        host,
        requests: 0,
        open: 0,
        byClass: { "1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0 },
        bytesIn: 0,
        bytesOut: 0,
        lastAt: 0,
        buckets: LATENCY_BOUNDS.map(() => 0),
        seconds: 0,
      };
      this.#hosts.set(host, f);
    }
    if (event.routeId !== undefined && host !== "") f.app = event.routeId;
    return f;
  }

  /** Forgets a host (its name was released). */
  forget(host: string): void {
    this.#hosts.delete(host);
  }

  /** One row per host, busiest first. */
  rows(): HostRow[] {
    return [...this.#hosts.values()].sort((a, b) => b.requests - a.requests).map((f) => {
      const row: HostRow = {
        host: f.host,
        requests: f.requests,
        open: f.open,
        byClass: { ...f.byClass },
        bytesIn: f.bytesIn,
        bytesOut: f.bytesOut,
        lastAt: f.lastAt,
      };
      if (f.app !== undefined) row.app = f.app;
      return row;
    });
  }

  /** The families for `/metrics`: requests, bytes and latency per host. */
  families(): HostMetricFamily[] {
    const all = [...this.#hosts.values()];
    return [
      {
        name: "burrow_http_requests",
        help: "Requests answered by the HTTP edge, by host and status class.",
        type: "counter",
        samples: all.flatMap((f) =>
          CLASSES.map((c) => ({ labels: { host: f.host, code: c }, value: f.byClass[c] }))
        ),
      },
      {
        name: "burrow_http_requests_open",
        help:
          "Requests forwarded to an app and not yet answered in full (WebSockets included), by host.",
        type: "gauge",
        samples: all.map((f) => ({ labels: { host: f.host }, value: f.open })),
      },
      {
        name: "burrow_http_received_bytes",
        help: "Request body bytes from users, by host.",
        type: "counter",
        samples: all.map((f) => ({ labels: { host: f.host }, value: f.bytesIn })),
      },
      {
        name: "burrow_http_sent_bytes",
        help: "Response body bytes to users, by host.",
        type: "counter",
        samples: all.map((f) => ({ labels: { host: f.host }, value: f.bytesOut })),
      },
      {
        name: "burrow_http_request_duration_seconds",
        help: "Time from a request's head to the end of its response, by host.",
        type: "histogram",
        samples: all.map((f) => ({
          labels: { host: f.host },
          bounds: LATENCY_BOUNDS,
          cumulative: [...f.buckets],
          sum: f.seconds,
          count: f.requests,
        })),
      },
    ];
  }
}
