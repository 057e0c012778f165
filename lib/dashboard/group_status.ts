/**
 * One group as the dashboard API shows it (`GET /api/groups`), built from
 * the monitor's record of it: online or offline, its apps with their
 * figures and traffic, and a shared app's replicas.
 *
 * @module
 */

import type { AppEntry } from "../protocol/services.ts";
import type { TrafficHistory } from "../tunnel/traffic.ts";
import { type AppTraffic, NO_FIGURES } from "./app_traffic.ts";
import {
  liveApps,
  type MonitoredApp,
  type MonitoredMember,
  replicaStatus,
} from "./replica_view.ts";
import type { AppStatus, GroupStatus, ServerStatus } from "./status_types.ts";

/** What the monitor keeps of one group. */
export interface GroupRecord {
  name: string;
  clientAddr: string;
  clientVersion: string;
  connectedSince: Date;
  session?: MonitoredMember;
  /** Every live session of the group (several for a shared group); `session` is the oldest. */
  members: MonitoredMember[];
  disconnectedAt?: Date;
  reason?: string;
  /** The apps of the last session, for an offline group. */
  lastApps: AppEntry[];
  apps: Map<string, AppTraffic>;
}

/** The group as the API shows it. */
export function groupStatus(record: GroupRecord, history: TrafficHistory): GroupStatus {
  const live = record.session ? liveApps(record) : undefined;
  const apps = (live ?? record.lastApps.map((entry): MonitoredApp => ({ entry }))).map((app) => {
    const status = appStatus(record, app.entry, !!record.session, history);
    if (app.shared === true && app.replicas) status.replicas = app.replicas().map(replicaStatus);
    return status;
  }).sort((a, b) => a.name.localeCompare(b.name));
  const status: GroupStatus = {
    name: record.name,
    online: record.session !== undefined,
    clientAddr: record.clientAddr,
    clientVersion: record.clientVersion,
    connectedSince: record.connectedSince.toISOString(),
    apps,
  };
  if (record.disconnectedAt) status.disconnectedAt = record.disconnectedAt.toISOString();
  if (record.reason !== undefined) status.reason = record.reason;
  return status;
}

function appStatus(
  record: GroupRecord,
  entry: AppEntry,
  online: boolean,
  history: TrafficHistory,
): AppStatus {
  const app = record.apps.get(entry.app);
  const f = app ? app.figures() : NO_FIGURES;
  const status: AppStatus = {
    name: entry.app,
    port: entry.port,
    online,
    connections: f.connections,
    connectionsTotal: f.total,
    bytesIn: f.bytesIn,
    bytesOut: f.bytesOut,
    lastActivity: f.lastActivity ? new Date(f.lastActivity).toISOString() : null,
    traffic: online ? history.series(`${record.name}/${entry.app}`) : { in: [], out: [] },
  };
  if (entry.description !== undefined) status.description = entry.description;
  return status;
}

/**
 * The server-wide totals over `records`, with the figures of forgotten apps
 * (so totals never go down) and the refusal counts added.
 */
export function serverTotals(
  records: Iterable<GroupRecord>,
  forgotten: { connectionsTotal: number; bytesIn: number; bytesOut: number },
  counts: { authFailures: number; refusals: number },
): ServerStatus["totals"] {
  const totals = {
    groupsOnline: 0,
    groupsOffline: 0,
    appsOnline: 0,
    connections: 0,
    connectionsTotal: forgotten.connectionsTotal,
    bytesIn: forgotten.bytesIn,
    bytesOut: forgotten.bytesOut,
    ...counts,
  };
  for (const record of records) {
    if (record.session) {
      totals.groupsOnline++;
      totals.appsOnline += liveApps(record).length;
    } else {
      totals.groupsOffline++;
    }
    for (const app of record.apps.values()) {
      const f = app.figures();
      totals.connections += f.connections;
      totals.connectionsTotal += f.total;
      totals.bytesIn += f.bytesIn;
      totals.bytesOut += f.bytesOut;
    }
  }
  return totals;
}
