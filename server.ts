/**
 * burrow-server: the public end. Parses flags, loads the optional config,
 * runs the server until SIGINT or SIGTERM.
 *
 * @module
 */

import { formatHostPort } from "./lib/addr.ts";
import {
  EXIT,
  parseFlags,
  printError,
  printLine,
  runMain,
  setupLogging,
  stopSignal,
} from "./lib/cli.ts";
import { ListenError } from "./lib/errors.ts";
import { startServer } from "./lib/server.ts";
import { loadServerConfig } from "./lib/server_config.ts";
import { VERSION } from "./lib/version.ts";

const USAGE = `burrow-server ${VERSION}: the public end of burrow tunnels

Usage: burrow-server [flags]

Flags (each overrides the same key of --config):
  --config FILE              server YAML file
  --bind HOST:PORT           control listener clients dial        (bind, default 0.0.0.0:7700)
  --token TOKEN              shared secret                        (token, default $BURROW_TOKEN)
  --no-auth                  accept any client without a token    (no_auth)
  --ports SPEC               public ports clients may claim       (ports, default 10000-20000)
  --public-host HOST         address public listeners bind on     (public_host, default 0.0.0.0)
  --heartbeat-timeout SEC    drop a client silent this long       (heartbeat_timeout, default 30)
  --log-level LEVEL          debug, info, warning or error        (log_level, default info)
  --help                     show this help
  --version                  show the version

Prints "listening HOST:PORT" on stdout once the control listener is bound.
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
    help: { type: "boolean" },
    version: { type: "boolean" },
  }, false);
  if (values.help) return printLine(USAGE), EXIT.ok;
  if (values.version) return printLine(`burrow-server ${VERSION}`), EXIT.ok;
  const config = await loadServerConfig(values, (name) => Deno.env.get(name));
  await setupLogging(config.logLevel);
  const stopping = stopSignal();
  let server;
  try {
    server = await startServer({
      bind: formatHostPort(config.bind),
      ...(config.token ? { token: config.token } : {}),
      noAuth: config.noAuth,
      ports: config.ports.map((r) => r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`).join(","),
      publicHost: config.publicHost,
      heartbeatTimeout: config.heartbeatTimeout,
    });
  } catch (err) {
    if (!(err instanceof ListenError)) throw err;
    printError(`burrow-server: ${err.message}`);
    return EXIT.failure;
  }
  printLine(`listening ${formatHostPort(server.addr)}`);
  await Promise.race([stopping, server.closed]);
  await server.close();
  return EXIT.ok;
}

if (import.meta.main) await runMain("burrow-server", main);
