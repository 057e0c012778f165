/**
 * The metric families a server exports on `/metrics`, built from what its
 * monitor holds: build info, groups, per-app figures, auth failures,
 * refusals by cause, users turned away and the work-connection wait.
 *
 * @module
 */

import type { HistogramSample, MetricFamily, Sample } from "./metrics.ts";
import { type AppTraffic, NO_FIGURES } from "./app_traffic.ts";
import { VERSION } from "../util/version.ts";

/** What the families are built from. */
export interface FamiliesView {
  startedAt: Date;
  /** Every group the monitor knows, online or not. */
  groups: Array<
    { name: string; online: boolean; exposed: Set<string>; apps: Map<string, AppTraffic> }
  >;
  /** Users turned away, keyed by group, app and cause joined with NUL. */
  turnedAway: Map<string, number>;
  /** Refusals by code. */
  refusals: Map<string, number>;
  authFailures: number;
  /** The wait histogram's sample. */
  wait: HistogramSample;
}

/** Every metric family, in a fixed order. */
export function serverFamilies(view: FamiliesView): MetricFamily[] {
  const up: Sample[] = [];
  const live: Sample[] = [];
  const total: Sample[] = [];
  const bytes: Sample[] = [];
  let online = 0;
  for (const record of view.groups) {
    if (record.online) online++;
    const exposed = record.exposed;
    const names = [...new Set([...exposed, ...record.apps.keys()])].sort();
    for (const app of names) {
      const labels = { group: record.name, app };
      const known = record.apps.get(app);
      const b = known ? known.figures() : NO_FIGURES;
      up.push({ labels, value: exposed.has(app) ? 1 : 0 });
      live.push({ labels, value: b.connections });
      total.push({ labels, value: b.total });
      bytes.push({ labels: { ...labels, direction: "in" }, value: b.bytesIn });
      bytes.push({ labels: { ...labels, direction: "out" }, value: b.bytesOut });
    }
  }
  const turnedAway = [...view.turnedAway].sort(([a], [b]) => a.localeCompare(b)).map(
    ([key, value]) => {
      const [group = "", app = "", cause = ""] = key.split("\0");
      return { labels: { group, app, cause }, value };
    },
  );
  const refusals = [...view.refusals].sort(([a], [b]) => a.localeCompare(b))
    .map(([cause, value]) => ({ labels: { cause }, value }));
  return [
    {
      name: "burrow_build_info",
      help: "The running burrow version (always 1).",
      type: "gauge",
      samples: [{ labels: { version: VERSION }, value: 1 }],
    },
    {
      name: "burrow_start_time_seconds",
      help: "When the server started, in seconds since the Unix epoch.",
      type: "gauge",
      samples: [{ value: view.startedAt.getTime() / 1000 }],
    },
    {
      name: "burrow_groups_online",
      help: "Groups with a live client now.",
      type: "gauge",
      samples: [{ value: online }],
    },
    {
      name: "burrow_groups_offline",
      help: "Groups seen since the server started whose client is gone (recent ones, bounded).",
      type: "gauge",
      samples: [{ value: view.groups.length - online }],
    },
    {
      name: "burrow_app_up",
      help: "Whether the app is exposed now (1) or not (0).",
      type: "gauge",
      samples: up,
    },
    {
      name: "burrow_app_connections_open",
      help: "User connections open now, per app.",
      type: "gauge",
      samples: live,
    },
    {
      name: "burrow_app_connections",
      help: "User connections accepted, per app.",
      type: "counter",
      samples: total,
    },
    {
      name: "burrow_app_bytes",
      help: "Bytes through the tunnel per app; direction in is users to the app, out the reverse.",
      type: "counter",
      samples: bytes,
    },
    {
      name: "burrow_auth_failures",
      help: "Connections that failed to prove they know the token.",
      type: "counter",
      samples: [{ value: view.authFailures }],
    },
    {
      name: "burrow_refusals",
      help: "Refusals sent to clients, by cause (the refusal code).",
      type: "counter",
      samples: refusals,
    },
    {
      name: "burrow_users_turned_away",
      help: "User connections closed before reaching the client, per app and cause " +
        "(allow_from, group_quota, pending_limit).",
      type: "counter",
      samples: turnedAway,
    },
    {
      name: "burrow_work_wait_seconds",
      help: "How long a user waited for a work connection from the client.",
      type: "histogram",
      samples: [view.wait],
    },
  ];
}
