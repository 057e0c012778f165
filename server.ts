/**
 * burrow-server: the public end. Parses flags, loads the optional config,
 * runs the server until SIGINT or SIGTERM.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatHostPort, type PortRange } from "./lib/util/addr.ts";
import {
  EXIT,
  parseFlags,
  printError,
  printLine,
  runMain,
  setupLogging,
  stopSignal,
} from "./lib/config/cli.ts";
import { errorMessage, ListenError } from "./lib/util/errors.ts";
import { type BurrowServer, startServer } from "./lib/server/server.ts";
import {
  type DashboardConfig,
  loadServerConfig,
  type ServerFlags,
} from "./lib/config/server_file.ts";
import type { DashboardOptions } from "./lib/dashboard/http.ts";
import type { ClusterConfig } from "./lib/config/cluster_keys.ts";
import type { ClusterOptions } from "./lib/server/api.ts";
import { loadUsersFile } from "./lib/server/users.ts";
import { VERSION } from "./lib/util/version.ts";

const USAGE = `burrow-server ${VERSION}: the public end of burrow tunnels

Usage: burrow-server [flags]

Flags (each overrides the same key of --config):
  --config FILE              server YAML file
  --bind HOST:PORT           control listener clients dial        (bind, default 0.0.0.0:7700)
  --token TOKEN              shared secret                        (token, default $BURROW_TOKEN)
  --no-auth                  accept any client without a token    (no_auth)
  --users FILE               per-group tokens, ports and quotas   (users; reloaded on SIGHUP)
  --ports SPEC               public ports clients may claim       (ports, default 10000-20000)
  --public-host HOST         address public listeners bind on     (public_host, default 0.0.0.0)
  --heartbeat-timeout SEC    drop a client silent this long       (heartbeat_timeout, default 30)
  --tls-cert FILE            own TLS certificate chain (PEM)      (tls.cert)
  --tls-key FILE             its private key (PEM)                (tls.key)
  --no-tls                   plaintext, not recommended           (tls: false)
  --state-dir DIR            where the generated CA is kept       (state_dir,
                             default $XDG_STATE_HOME/burrow or ~/.local/state/burrow)
  --log-level LEVEL          debug, info, warning or error        (log_level, default info)
  --dashboard HOST:PORT      serve the dashboard and /metrics     (dashboard.bind, default off)
  --dashboard-user USER      its basic-auth user                  (dashboard.user, default admin)
  --dashboard-password PASS  its password                         (dashboard.password,
                             default $BURROW_DASHBOARD_PASSWORD; required off loopback)
  --http HOST:PORT           shared plain-HTTP listener for http apps (http.bind, default off)
  --https HOST:PORT          shared TLS listener: http apps, tls apps by SNI (https.bind)
  --domain NAME              http and tls apps are named SUBDOMAIN.NAME (domain)
  --https-cert FILE          default certificate for --https (PEM)    (https.cert)
  --https-key FILE           its private key (PEM)                    (https.key)
  --cluster URL              join a cluster on this Redis store   (cluster.store, default off;
                             needs $BURROW_CLUSTER_SECRET or cluster.secret)
  --node NAME                this node's name in the cluster      (cluster.node,
                             default the host name and a random suffix)
  --relay HOST:PORT          where other nodes link to this one   (cluster.relay)
  --advertise HOST:PORT      the address they dial for it         (cluster.advertise,
                             default the relay address)
  --help                     show this help
  --version                  show the version

Without --tls-cert the server makes its own certificate authority on first
start and reuses it; clients pin it by its fingerprint.
Prints "listening HOST:PORT" on stdout once the control listener is bound,
then "fingerprint sha256:HEX" (the CA clients verify; not with --no-tls),
"dashboard http://HOST:PORT/" once the dashboard is, and "http http://HOST:PORT/"
and "https https://HOST:PORT/" once the web listeners are, and "cluster NODE via
HOST:PORT" (the store) once it has joined a cluster.
Exit codes: 0 clean stop, 1 failure or cannot bind, 2 usage or config error.`;

async function main(args: string[]): Promise<number> {
  const { values } = parseFlags(args, {
    config: { type: "string" },
    bind: { type: "string" },
    token: { type: "string" },
    "no-auth": { type: "boolean" },
    ports: { type: "string" },
    "public-host": { type: "string" },
    "heartbeat-timeout": { type: "string" },
    "log-level": { type: "string" },
    "no-tls": { type: "boolean" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    "state-dir": { type: "string" },
    users: { type: "string" },
    dashboard: { type: "string" },
    "dashboard-user": { type: "string" },
    "dashboard-password": { type: "string" },
    http: { type: "string" },
    https: { type: "string" },
    domain: { type: "string" },
    "https-cert": { type: "string" },
    "https-key": { type: "string" },
    cluster: { type: "string" },
    node: { type: "string" },
    relay: { type: "string" },
    advertise: { type: "string" },
    help: { type: "boolean" },
    version: { type: "boolean" },
  }, false);
  if (values.help) return printLine(USAGE), EXIT.ok;
  if (values.version) return printLine(`burrow-server ${VERSION}`), EXIT.ok;
  const config = await loadServerConfig(values, (name) => Deno.env.get(name));
  await setupLogging(config.logLevel);
  const log = getLogger(["burrow", "server"]);
  const users = config.users === undefined
    ? undefined
    : await loadUsersFile(config.users, (name) => Deno.env.get(name), log);
  const stopping = stopSignal();
  let server;
  try {
    server = await startServer({
      bind: formatHostPort(config.bind),
      ...(config.token ? { token: config.token } : {}),
      noAuth: config.noAuth,
      ports: portSpec(config.ports),
      publicHost: config.publicHost,
      heartbeatTimeout: config.heartbeatTimeout,
      tls: config.tls,
      limits: config.limits,
      ...(users === undefined ? {} : { users }),
      ...(config.stateDir !== undefined ? { stateDir: config.stateDir } : {}),
      ...(config.dashboard ? { dashboard: dashboardOptions(config.dashboard) } : {}),
      ...(config.web ? { web: config.web } : {}),
      ...(config.cluster ? { cluster: clusterOptions(config.cluster) } : {}),
    });
  } catch (err) {
    if (!(err instanceof ListenError)) throw err;
    printError(`burrow-server: ${err.message}`);
    return EXIT.failure;
  }
  // SIGHUP is handled before the first line: a script that reloads as soon as it
  // reads "listening" must not meet the default action (the process ends).
  const reloads = new AbortController();
  if ((values.config !== undefined || config.users !== undefined) && Deno.build.os !== "windows") {
    const running = server;
    // One reload at a time, in order: a burst of SIGHUPs ends with the newest file.
    let reloading = Promise.resolve();
    const reload = () => reloading = reloading.then(() => reloadFiles(running, values));
    Deno.addSignalListener("SIGHUP", reload);
    reloads.signal.addEventListener("abort", () => Deno.removeSignalListener("SIGHUP", reload));
  }
  // "listening" stays the first line (scripts read the port from it).
  printLine(`listening ${formatHostPort(server.addr)}`);
  if (server.fingerprint !== undefined) printLine(`fingerprint ${server.fingerprint}`);
  if (server.dashboardAddr) printLine(`dashboard http://${formatHostPort(server.dashboardAddr)}/`);
  if (server.httpAddr) printLine(`http http://${formatHostPort(server.httpAddr)}/`);
  if (server.httpsAddr) printLine(`https https://${formatHostPort(server.httpsAddr)}/`);
  if (server.cluster) printLine(`cluster ${server.cluster.node} via ${server.cluster.store}`);
  await Promise.race([stopping, server.closed]);
  reloads.abort();
  await server.close();
  return EXIT.ok;
}

/**
 * SIGHUP: reads --config again and applies its port ranges, and reads the
 * users file again and applies it. A bad file is reported and ignored.
 */
async function reloadFiles(server: BurrowServer, flags: ServerFlags): Promise<void> {
  const log = getLogger(["burrow", "server"]);
  const env = (name: string) => Deno.env.get(name);
  let config;
  try {
    config = await loadServerConfig(flags, env);
    server.setPorts(portSpec(config.ports));
  } catch (err) {
    log.error(`reload (SIGHUP) failed, the port ranges are kept: ${errorMessage(err)}`);
    return;
  }
  if (config.users === undefined) return;
  try {
    server.setUsers(await loadUsersFile(config.users, env, log));
  } catch (err) {
    log.error(`reload (SIGHUP) failed, the users are kept: ${errorMessage(err)}`);
  }
}

/** The config's dashboard as `startServer` takes it. */
function dashboardOptions(config: DashboardConfig): DashboardOptions {
  const options: DashboardOptions = { bind: formatHostPort(config.bind) };
  if (config.user !== undefined) options.user = config.user;
  if (config.password !== undefined) options.password = config.password;
  return options;
}

/** The config's cluster as `startServer` takes it. */
function clusterOptions(config: ClusterConfig): ClusterOptions {
  const options: ClusterOptions = {
    store: config.store,
    relay: formatHostPort(config.relay),
    secret: config.secret,
  };
  if (config.node !== undefined) options.node = config.node;
  if (config.advertise !== undefined) options.advertise = formatHostPort(config.advertise);
  return options;
}

/** Ranges back to the `6000-6100,7022` form. */
function portSpec(ranges: PortRange[]): string {
  return ranges.map((r) => r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`).join(",");
}

if (import.meta.main) await runMain("burrow-server", main);
