/**
 * The cluster in the dashboard, API and metrics of a node: every group of
 * every node (each with its node; groups on other nodes from this node's
 * view of the store, so with their ports and web apps but without live
 * figures), the
 * store's state (the page says when it is unreachable), and the
 * `burrow_cluster_*` families.
 *
 * @module
 */

import type { Claim, NodeRecord, StoreState } from "../cluster/store.ts";
import type { MetricFamily } from "./metrics.ts";
import type { AppStatus, ClusterStatus, GroupStatus } from "./status_types.ts";

/** What the dashboard reads of a cluster node (the server's `ClusterNode` fits). */
export interface ClusterSource {
  readonly node: string;
  readonly store: string;
  readonly state: StoreState;
  readonly view: { nodes(): NodeRecord[]; claims(): Claim[] };
  readonly relayed: { open: number; total: number };
}

/** The cluster part of `GET /api/status`. */
export function clusterStatus(source: ClusterSource): ClusterStatus {
  const state = source.state;
  const status: ClusterStatus = {
    node: source.node,
    store: source.store,
    storeState: state.status,
    storeSince: new Date(state.since).toISOString(),
    nodes: source.view.nodes().map((n) => ({
      name: n.name,
      advertise: n.advertise,
      lastSeen: new Date(n.lastSeen).toISOString(),
    })).sort((a, b) => a.name.localeCompare(b.name)),
  };
  if (state.status === "unreachable") status.storeError = state.error;
  return status;
}

/** This node's groups marked with its name, then the groups other nodes hold. */
export function withClusterGroups(groups: GroupStatus[], source: ClusterSource): GroupStatus[] {
  const local = groups.map((g) => ({ ...g, node: source.node }));
  const here = new Set(local.filter((g) => g.online).map((g) => g.name));
  const claims = source.view.claims();
  const remote: GroupStatus[] = [];
  for (const group of claims) {
    if (group.kind !== "group" || group.node === source.node || here.has(group.key)) continue;
    const ports = claims.filter((c) => c.kind === "port" && c.session === group.session)
      .map((c) => Number(c.key)).sort((a, b) => a - b);
    remote.push({
      name: group.key,
      online: true,
      node: group.node,
      clientAddr: "",
      clientVersion: "",
      connectedSince: new Date(group.since).toISOString(),
      apps: [
        ...ports.map((port) => ({ ...IDLE, name: `port ${port}`, port })),
        ...webApps(claims.filter((c) => c.kind === "host" && c.session === group.session)),
      ],
    });
  }
  const gone = local.filter((g) => !g.online && !remote.some((r) => r.name === g.name));
  return [...local.filter((g) => g.online), ...remote, ...gone]
    .sort((a, b) =>
      Number(b.online) - Number(a.online) || (a.online ? a.name.localeCompare(b.name) : 0)
    );
}

/** The figures of an app of another node: this node has none. */
const IDLE = {
  online: true,
  connections: 0,
  connectionsTotal: 0,
  bytesIn: 0,
  bytesOut: 0,
  lastActivity: null,
  traffic: { in: [], out: [] },
};

/** Another node's web apps, from its host claims' meta (`lib/server/cluster/remote_hosts.ts`). */
function webApps(hosts: Claim[]): AppStatus[] {
  const apps = new Map<string, AppStatus & { urls: string[] }>();
  for (const claim of hosts) {
    let meta: { app?: unknown; type?: unknown };
    try {
      meta = JSON.parse(claim.meta ?? "{}");
    } catch {
      continue;
    }
    if (typeof meta.app !== "string" || (meta.type !== "http" && meta.type !== "tls")) continue;
    const app = apps.get(meta.app) ??
      { ...IDLE, name: meta.app, port: 0, type: meta.type, urls: [] };
    app.urls.push(`${meta.type === "tls" ? "tls" : "http"}://${claim.key}`);
    apps.set(meta.app, app);
  }
  return [...apps.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** `burrow_cluster_*`: nodes, claims by kind, the store's state, users relayed. */
export function clusterFamilies(source: ClusterSource): MetricFamily[] {
  const claims = source.view.claims();
  const count = (kind: Claim["kind"]) => claims.filter((c) => c.kind === kind).length;
  return [
    {
      name: "burrow_cluster_nodes",
      help: "Live nodes of the cluster, as this node's view of the store has them.",
      type: "gauge",
      samples: [{ value: source.view.nodes().length }],
    },
    {
      name: "burrow_cluster_claims",
      help: "Live claims in the cluster, by kind.",
      type: "gauge",
      samples: (["group", "port", "host"] as const).map((kind) => ({
        labels: { kind },
        value: count(kind),
      })),
    },
    {
      name: "burrow_cluster_store_up",
      help: "1 while the cluster store answers this node, 0 while it is unreachable.",
      type: "gauge",
      samples: [{ value: source.state.status === "connected" ? 1 : 0 }],
    },
    {
      name: "burrow_cluster_relayed_users_open",
      help: "Users this node relays to the node holding their group, open now.",
      type: "gauge",
      samples: [{ value: source.relayed.open }],
    },
    {
      name: "burrow_cluster_relayed_users",
      help: "Users this node has relayed to other nodes.",
      type: "counter",
      samples: [{ value: source.relayed.total }],
    },
  ];
}
