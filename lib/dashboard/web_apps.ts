/**
 * The server's web apps (`type: http` and `type: tls`, served by name on
 * the shared `--http`/`--https` listeners) as the dashboard shows them: an
 * app row per web app in its group, with its URLs instead of a port and
 * the edge's per-host figures summed over its names, and the edge's
 * per-host metric families for `/metrics`.
 *
 * The monitor reads them from a {@linkcode MonitoredWeb} (the server's
 * `WebService` fits); nothing here touches a socket.
 *
 * @module
 */

import type { MetricFamily } from "./metrics.ts";
import { type MonitoredReplica, replicaStatus } from "./replica_view.ts";
import type { AppStatus, GroupStatus, WebHostStatus } from "./status_types.ts";

/** One web app holding names (`WebAppView` of lib/http/service.ts fits). */
export interface MonitoredWebApp {
  /** `GROUP/APP`. */
  id: string;
  group: string;
  app: string;
  type: "http" | "tls";
  names: string[];
  urls: string[];
  live: boolean;
  /** The clients serving it, when its group is shared. */
  replicas?: readonly MonitoredReplica[];
}

/** One host's figures (`HostRow` of lib/http/host_metrics.ts fits). */
export interface MonitoredHost extends WebHostStatus {
  /** The id of the app that answered last. */
  app?: string;
  /** Milliseconds since the epoch of the last request. */
  lastAt: number;
}

/** What the monitor reads of the server's web side (the server's `WebService` fits). */
export interface MonitoredWeb {
  apps(): MonitoredWebApp[];
  readonly hosts: { rows(): MonitoredHost[]; families(): MetricFamily[] };
}

/** The web app rows of every group, by group name, sorted by app name. */
export function webAppRows(web: MonitoredWeb): Map<string, AppStatus[]> {
  const byApp = new Map<string, MonitoredHost[]>();
  for (const row of web.hosts.rows()) {
    if (row.app === undefined) continue;
    const rows = byApp.get(row.app) ?? [];
    rows.push(row);
    byApp.set(row.app, rows);
  }
  const out = new Map<string, AppStatus[]>();
  for (const app of web.apps()) {
    const names = new Set(app.names);
    const rows = (byApp.get(app.id) ?? []).filter((r) => names.has(r.host));
    const last = Math.max(0, ...rows.map((r) => r.lastAt));
    const status: AppStatus = {
      name: app.app,
      port: 0,
      type: app.type,
      urls: app.urls,
      online: app.live,
      connections: rows.reduce((n, r) => n + r.open, 0),
      connectionsTotal: rows.reduce((n, r) => n + r.requests, 0),
      bytesIn: rows.reduce((n, r) => n + r.bytesIn, 0),
      bytesOut: rows.reduce((n, r) => n + r.bytesOut, 0),
      lastActivity: last > 0 ? new Date(last).toISOString() : null,
      traffic: { in: [], out: [] },
      hosts: rows.map((r) => ({
        host: r.host,
        requests: r.requests,
        open: r.open,
        byClass: r.byClass,
        bytesIn: r.bytesIn,
        bytesOut: r.bytesOut,
      })),
    };
    if (app.replicas !== undefined) status.replicas = app.replicas.map(replicaStatus);
    const list = out.get(app.group) ?? [];
    list.push(status);
    out.set(app.group, list);
  }
  return out;
}

/** Adds each group's web app rows to its status (groups without a live session included). */
export function withWebApps(groups: GroupStatus[], web: MonitoredWeb | undefined): GroupStatus[] {
  if (!web) return groups;
  const rows = webAppRows(web);
  for (const group of groups) {
    const apps = rows.get(group.name);
    if (!apps) continue;
    group.apps = [...group.apps.filter((a) => a.type === undefined), ...apps]
      .sort((a, b) => a.name.localeCompare(b.name));
  }
  return groups;
}

/** The edge's per-host families, in the exposition writer's shape. */
export function webFamilies(web: MonitoredWeb | undefined): MetricFamily[] {
  return web ? web.hosts.families() : [];
}
