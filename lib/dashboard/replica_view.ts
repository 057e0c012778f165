/**
 * What the monitor shows of shared groups: the apps their sessions expose
 * (each once, however many replicas), each replica as the API and the
 * metrics show it, and the event a replica joining or leaving makes.
 *
 * @module
 */

import type { AppEntry } from "../protocol/services.ts";
import type { ServerEvent } from "./events.ts";
import type { ReplicaStatus } from "./status_types.ts";

/** What the monitor reads of one replica of a shared app. */
export interface MonitoredReplica {
  readonly clientAddr: string;
  readonly since: Date;
  readonly healthy: boolean;
  readonly reason?: string;
  readonly active: number;
  readonly served: number;
}

/** What the monitor reads of an exposed app. */
export interface MonitoredApp {
  readonly entry: AppEntry;
  readonly shared?: boolean;
  replicas?(): readonly MonitoredReplica[];
}

/** What these helpers read of a session. */
export interface MonitoredMember {
  readonly group: string;
  readonly clientAddr: string;
  readonly clientVersion: string;
  readonly since: Date;
  stats(): MonitoredApp[];
}

/** The apps a group's live sessions expose, each once (replicas share one app). */
export function liveApps(record: { members: readonly MonitoredMember[] }): MonitoredApp[] {
  const seen = new Map<string, MonitoredApp>();
  for (const member of record.members) {
    for (const app of member.stats()) if (!seen.has(app.entry.app)) seen.set(app.entry.app, app);
  }
  return [...seen.values()];
}

/** A replica as the API shows it. */
export function replicaStatus(r: MonitoredReplica): ReplicaStatus {
  const status: ReplicaStatus = {
    clientAddr: r.clientAddr,
    healthy: r.healthy,
    connections: r.active,
    connectionsTotal: r.served,
    since: r.since.toISOString(),
  };
  if (r.reason !== undefined) status.reason = r.reason;
  return status;
}

/** The replicas of shared apps, as the metric families take them. */
export function replicaSamples(apps: readonly MonitoredApp[]): Array<
  { app: string; replica: string; healthy: boolean; connections: number; total: number }
> {
  return apps.flatMap((app) =>
    app.shared === true && app.replicas
      ? app.replicas().map((r) => ({
        app: app.entry.app,
        replica: r.clientAddr,
        healthy: r.healthy,
        connections: r.active,
        total: r.served,
      }))
      : []
  );
}

/** The event of a replica joining or leaving its shared group. */
export function replicaEvent(
  session: MonitoredMember,
  how: "joined" | "left",
  count: string,
  reason?: string,
): Omit<ServerEvent, "id" | "at"> {
  const why = reason === undefined ? ` (burrow ${session.clientVersion})` : `: ${reason}`;
  return {
    kind: "replica",
    group: session.group,
    addr: session.clientAddr,
    message: `replica ${session.clientAddr} ${how} shared group ${session.group} (${count})${why}`,
  };
}
