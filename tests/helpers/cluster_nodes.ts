/**
 * Cluster nodes as real `server.ts` processes for the e2e tests: each on
 * its own loopback address (127.0.0.2, .3, .4: control, relay and public
 * ports all on it), all sharing one store, one secret and one port range.
 * Readiness is the node's own `cluster NODE via HOST:PORT` line.
 *
 * @module
 */

import { Proc } from "./process.ts";
import { groupFile, startClient } from "./harness.ts";

/** The secret every test node shares. */
export const CLUSTER_SECRET = "test-cluster-secret-0123456789";

/** Options for {@linkcode startNode}. */
export interface NodeOptions {
  /** The node's name, also its log prefix. */
  name: string;
  /** Its loopback address, e.g. 127.0.0.2. */
  host: string;
  /** The store URL. */
  store: string;
  /** The shared port range. */
  ports: string;
  token: string;
  /** Seconds; the lease. */
  heartbeatTimeout?: number;
  secret?: string;
  /** Reuse these ports (a restart on the same addresses). */
  controlPort?: number;
  relayPort?: number;
  args?: string[];
}

/** A running node. */
export interface NodeProc extends AsyncDisposable {
  name: string;
  host: string;
  proc: Proc;
  /** The control port. */
  port: number;
  /** `HOST:PORT` a client dials. */
  control: string;
  /** The relay port. */
  relayPort: number;
  /** `http://HOST:PORT/` of its dashboard. */
  dashboard: string;
  options: NodeOptions;
}

/** Starts one node and waits until it has joined (its `cluster` line). */
export async function startNode(o: NodeOptions): Promise<NodeProc> {
  const args = [
    "--bind",
    `${o.host}:${o.controlPort ?? 0}`,
    "--public-host",
    o.host,
    "--ports",
    o.ports,
    "--token",
    o.token,
    "--heartbeat-timeout",
    String(o.heartbeatTimeout ?? 3),
    "--log-level",
    "debug",
    "--cluster",
    o.store,
    "--node",
    o.name,
    "--relay",
    `${o.host}:${o.relayPort ?? 0}`,
    "--dashboard",
    `${o.host}:0`,
    ...(o.args ?? []),
  ];
  const proc = new Proc("server.ts", args, { BURROW_CLUSTER_SECRET: o.secret ?? CLUSTER_SECRET });
  try {
    const listening = await proc.stdout.wait(/^listening [\d.]+:(\d+)$/, 30_000);
    await proc.stdout.wait(new RegExp(`^cluster ${o.name} via 127\\.0\\.0\\.1:\\d+$`), 30_000);
    const relay = await proc.stderr.wait(/relay on [\d.]+:(\d+)/, 30_000);
    const dashboard = await proc.stdout.wait(/^dashboard (http:\/\/\S+)$/, 30_000);
    const port = Number(listening[1]);
    return {
      name: o.name,
      host: o.host,
      proc,
      port,
      control: `${o.host}:${port}`,
      relayPort: Number(relay[1]),
      dashboard: dashboard[1]!,
      options: o,
      [Symbol.asyncDispose]: () => proc.stop(),
    };
  } catch (err) {
    await proc.stop();
    throw new Error(`node ${o.name} did not start: ${err}\nstderr:\n${proc.stderr.text}`);
  }
}

/** GET a dashboard path of a node as JSON (or text for /metrics). */
// deno-lint-ignore no-explicit-any
export async function nodeApi(node: { dashboard: string }, path: string): Promise<any> {
  const r = await fetch(new URL(path, node.dashboard));
  return path === "metrics" ? await r.text() : await r.json();
}

/** A client of `group` on `node` with one app `echo` pointing at `local`. */
export function nodeClient(
  node: { control: string },
  o: { group: string; token: string; local: string; remotePort?: number },
): Proc {
  return startClient(groupFile({
    server: node.control,
    token: o.token,
    group: o.group,
    heartbeat_interval: 1, // the nodes' heartbeat_timeout is short
    apps: [{
      name: "echo",
      local: o.local,
      ...(o.remotePort === undefined ? {} : { remote_port: o.remotePort }),
    }],
  }));
}

/** Waits for `ready GROUP/APP HOST:PORT` (any host) and returns the port. */
export async function readyOn(client: Proc, group: string, app = "echo", from = 0) {
  const m = await client.stdout.wait(
    new RegExp(`^ready ${group}/${app} [\\d.]+:(\\d+)$`),
    30_000,
    from,
  );
  return Number(m[1]);
}
