/**
 * burrow-client: the agent behind NAT. Reads a group file, registers the
 * group's apps with the server, prints a `ready` line per live app, and
 * keeps them registered until SIGINT or SIGTERM.
 *
 * @module
 */

import { formatHostPort } from "./lib/util/addr.ts";
import {
  EXIT,
  parseFlags,
  printError,
  printLine,
  runMain,
  setupLogging,
  stopSignal,
  UsageError,
} from "./lib/config/cli.ts";
import { startClient } from "./lib/client/client.ts";
import { getLogger } from "@logtape/logtape";
import { loadClientConfig } from "./lib/config/group_file.ts";
import { GroupApps, reloadGroup, watchFile } from "./lib/client/reload.ts";
import { runDiscovery } from "./lib/client/discovery_cli.ts";
import { refusalLine, RefusedError } from "./lib/util/errors.ts";
import { printStatusOnReady } from "./lib/client/status_table.ts";
import { VERSION } from "./lib/util/version.ts";

const USAGE = `burrow-client ${VERSION}: exposes a group of local apps through a burrow server

Usage: burrow-client GROUP.yaml [flags]
       burrow-client --services   --server HOST:PORT [--token TOKEN] [--json]
       burrow-client --free-ports --server HOST:PORT [--token TOKEN] [--json]

Flags (each overrides the same key of GROUP.yaml):
  --server HOST:PORT   the server's control address   (server); several, comma-separated,
                       are tried in turn (a cluster's nodes)
  --token TOKEN        shared secret                  (token)
  --fingerprint FP     pin the server's CA, sha256:HEX as the server prints it (fingerprint)
  --ca FILE            verify the server against this CA certificate (ca)
  --no-tls             plaintext, not recommended     (tls: false)
  --state-dir DIR      where servers trusted on first use are recorded (state_dir,
                       default $XDG_STATE_HOME/burrow or ~/.local/state/burrow)
  --proxy URL          reach the server through http://[USER:PASS@]HOST:PORT (CONNECT)
                       or socks5://[USER:PASS@]HOST:PORT (proxy, else $BURROW_PROXY)
  --group NAME         with --services or --free-ports: the group whose token is given
  --log-level LEVEL    debug, info, warning or error (default info)
  --services           list the services live on the server, then exit
  --free-ports         list the public ports the server would still give out, then exit
  --json               with --services or --free-ports: print JSON instead of a table
  --help               show this help
  --version            show the version

Prints "ready GROUP/APP HOST:PORT" on stdout each time an app goes live, and
"admin http://HOST:PORT/api/status" when the group file's admin key is set.
On a terminal, a table of the apps goes to stderr at start and after reconnects.
Exit codes: 0 clean stop, 1 failure, 2 usage or config error, 3 refused by the server.`;

async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    server: { type: "string" },
    token: { type: "string" },
    "log-level": { type: "string" },
    fingerprint: { type: "string" },
    ca: { type: "string" },
    "no-tls": { type: "boolean" },
    "state-dir": { type: "string" },
    proxy: { type: "string" },
    group: { type: "string" },
    services: { type: "boolean" },
    "free-ports": { type: "boolean" },
    json: { type: "boolean" },
    help: { type: "boolean" },
    version: { type: "boolean" },
  }, true);
  if (values.help) return printLine(USAGE), EXIT.ok;
  if (values.version) return printLine(`burrow-client ${VERSION}`), EXIT.ok;
  if (values.services || values["free-ports"]) {
    if (positionals.length > 0) throw new UsageError("discovery takes no GROUP.yaml");
    return await runDiscovery(values, (name) => Deno.env.get(name));
  }
  if (values.json) throw new UsageError("--json goes with --services or --free-ports");
  if (values.group !== undefined) {
    throw new UsageError("--group goes with --services or --free-ports");
  }
  const [file, ...extra] = positionals;
  if (file === undefined) throw new UsageError("missing argument GROUP.yaml");
  if (extra.length > 0) {
    throw new UsageError("unexpected second argument: only GROUP.yaml is taken");
  }
  const config = await loadClientConfig(file, values, (name) => Deno.env.get(name));
  await setupLogging(config.logLevel);

  const stop = new AbortController();
  const stopping = stopSignal().then(() => stop.abort());
  // Reloads (file changes, SIGHUP) run one at a time, in order, from the start:
  // a change made while the server is still out of reach is not lost.
  const log = getLogger(["burrow", "client"]);
  let current = config;
  let apps: GroupApps | undefined;
  let reloading = Promise.resolve();
  const load = () => loadClientConfig(file, values, (name) => Deno.env.get(name));
  watchFile(file, (why) => {
    reloading = reloading.then(async () => {
      current = await reloadGroup(current, load, apps, log, why);
    });
  }, stop.signal);
  let refuse!: (err: RefusedError) => void;
  const refused = new Promise<RefusedError>((resolve) => refuse = resolve);
  const client = await Promise.race([
    startClient({
      server: config.server.map(formatHostPort),
      token: config.token,
      group: config.group,
      ...(config.shared ? { shared: true } : {}),
      heartbeatInterval: config.heartbeatInterval,
      tls: config.tls,
      ...(config.stateDir === undefined ? {} : { stateDir: config.stateDir }),
      signal: stop.signal,
      ...(config.admin ? { admin: formatHostPort(config.admin) } : {}),
      ...(config.inspect ? { inspect: formatHostPort(config.inspect) } : {}),
      ...(config.proxy ? { proxy: config.proxy } : {}),
      onReady: (tunnel) =>
        printLine(
          `ready ${config.group}/${tunnel.name} ${
            tunnel.urls.length > 0
              ? tunnel.urls.join(" ")
              : `${tunnel.transport === "udp" ? "udp://" : ""}${
                formatHostPort({ hostname: tunnel.serverHost, port: tunnel.remotePort })
              }`
          }`,
        ),
    }),
    stopping.then(() => undefined),
  ]).catch((err) => {
    if (err instanceof RefusedError) refuse(err);
    else if (!stop.signal.aborted) throw err;
    return undefined;
  });
  if (client) {
    if (client.adminAddr) printLine(`admin http://${formatHostPort(client.adminAddr)}/api/status`);
    if (client.inspectAddr) printLine(`inspect http://${formatHostPort(client.inspectAddr)}/`);
    // People at a terminal get a table of the apps once they are live, and after each reconnect.
    if (Deno.stderr.isTerminal()) printStatusOnReady(client, (table) => printError(table));
    client.closed.then((reason) => reason instanceof RefusedError && refuse(reason));
    // The apps start inside the reload chain, from the file as last read.
    const running = client;
    reloading = reloading.then(() => {
      apps = new GroupApps(running, log, refuse);
      apps.start(current.apps);
    });
  }
  const outcome = await Promise.race([stopping.then(() => undefined), refused]);
  await client?.close();
  if (outcome instanceof RefusedError) {
    printError(`burrow-client: ${refusalLine(outcome)}`);
    return EXIT.refused;
  }
  return EXIT.ok;
}

if (import.meta.main) await runMain("burrow-client", main);
