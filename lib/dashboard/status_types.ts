/**
 * What the dashboard's JSON API reports: apps, groups and server-wide
 * figures, as `ServerMonitor` builds them and `groups()`/`status()` return them.
 *
 * @module
 */

import type { TrafficSeries } from "../tunnel/traffic.ts";

/** One app of a group, as the dashboard API shows it. */
export interface AppStatus {
  /** The app's name within its group. */
  name: string;
  /** The public port (for an offline group: the port it last had); 0 for a web app. */
  port: number;
  /** For a web app (served by name on `--http`/`--https`): `http` or `tls`; `udp` for a udp app. */
  type?: "http" | "tls" | "udp";
  /** For a udp app: datagrams each way and dropped, since the server started. */
  udp?: { datagramsIn: number; datagramsOut: number; dropped: number };
  /** For a web app: the URLs it is reached at, instead of a port. */
  urls?: string[];
  /** For a web app: the edge's figures per host name it holds (connections count requests). */
  hosts?: WebHostStatus[];
  /** Free text from the app's config, if it has one. */
  description?: string;
  /** Whether the app is exposed now. */
  online: boolean;
  /** User connections open now. */
  connections: number;
  /** User connections since the server started (across the client's reconnects). */
  connectionsTotal: number;
  /** Bytes from users to the app, since the server started. */
  bytesIn: number;
  /** Bytes from the app to users, since the server started. */
  bytesOut: number;
  /** When a user last connected, left, or moved bytes (ISO time), or null if never. */
  lastActivity: string | null;
  /** Bytes per second, one sample a second, oldest first (online apps only). */
  traffic: TrafficSeries;
  /** For an app of a shared group: the clients serving it now, oldest first. */
  replicas?: ReplicaStatus[];
}

/** One host name of a web app, as the edge counted it. */
export interface WebHostStatus {
  /** The name, as the user sent it (normalised). */
  host: string;
  /** Requests answered. */
  requests: number;
  /** Requests forwarded and not yet answered in full. */
  open: number;
  /** Requests answered, by status class. */
  byClass: Record<"1xx" | "2xx" | "3xx" | "4xx" | "5xx", number>;
  /** Request body bytes from users. */
  bytesIn: number;
  /** Response body bytes to users. */
  bytesOut: number;
}

/** One client serving an app of a shared group. */
export interface ReplicaStatus {
  /** The client's address as the server sees it. */
  clientAddr: string;
  /** False while the client's health checks of its local service fail. */
  healthy: boolean;
  /** Why it is unhealthy, as the client said. */
  reason?: string;
  /** Users it serves now. */
  connections: number;
  /** Users it has served. */
  connectionsTotal: number;
  /** When it joined (ISO time). */
  since: string;
}

/** One group, online or recently offline. */
export interface GroupStatus {
  /** The group's name. */
  name: string;
  /** Whether a client holds the group now. */
  online: boolean;
  /** The client's address as the server sees it (its last one, if offline). */
  clientAddr: string;
  /** The burrow version the client reported. */
  clientVersion: string;
  /** When its current (or last) session began. */
  connectedSince: string;
  /** When it went offline, if it is offline. */
  disconnectedAt?: string;
  /** Why it went offline, if it is offline. */
  reason?: string;
  /** Its apps (for an offline group: those it last had). */
  apps: AppStatus[];
  /** In a cluster: the node that holds the group. */
  node?: string;
}

/** A node's picture of its cluster, as `GET /api/status` shows it under `cluster`. */
export interface ClusterStatus {
  /** This node's name. */
  node: string;
  /** The store, `HOST:PORT`. */
  store: string;
  /** Whether the store answers; while `unreachable`, registrations wait. */
  storeState: "connecting" | "connected" | "unreachable";
  /** Since when (ISO time). */
  storeSince: string;
  /** What went wrong, while unreachable (credentials masked). */
  storeError?: string;
  /** The live nodes, by name. */
  nodes: Array<{ name: string; advertise: string; lastSeen: string }>;
}

/** Server-wide figures, as `GET /api/status` shows them. */
export interface ServerStatus {
  /** The server's burrow version. */
  version: string;
  /** When the server started (ISO time). */
  startedAt: string;
  /** Seconds since it started. */
  uptimeSeconds: number;
  /** Figures across every group. */
  totals: {
    /** Groups with a live client. */
    groupsOnline: number;
    /** Groups seen whose client is gone (recent ones). */
    groupsOffline: number;
    /** Apps exposed now. */
    appsOnline: number;
    /** User connections open now. */
    connections: number;
    connectionsTotal: number;
    bytesIn: number;
    bytesOut: number;
    authFailures: number;
    refusals: number;
  };
  /** When the server is a cluster node. */
  cluster?: ClusterStatus;
}
