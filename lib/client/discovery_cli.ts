/**
 * `client.ts --services` and `client.ts --free-ports`: discovery from the
 * command line, as a table for people or JSON for scripts.
 *
 * @module
 */

import { EXIT, printError, printLine, UsageError } from "../config/cli.ts";
import {
  checkFlag,
  envProxy,
  envToken,
  hostPortField,
  nameField,
  proxyField,
} from "../config/fields.ts";
import { fingerprintField } from "../config/group_file.ts";
import { discoverFreePorts, discoverServices, type DiscoveryOptions } from "./discovery.ts";
import { ConfigError, errorMessage, refusalLine, RefusedError } from "../util/errors.ts";
import { Secret } from "../util/secret.ts";
import type { ServiceInfo } from "../protocol/services.ts";

/** The flags discovery reads. */
export interface DiscoveryFlags {
  services?: boolean;
  "free-ports"?: boolean;
  json?: boolean;
  server?: string;
  token?: string;
  group?: string;
  fingerprint?: string;
  ca?: string;
  "no-tls"?: boolean;
  "state-dir"?: string;
  proxy?: string;
}

/** Runs one discovery question and prints the answer; returns the exit code. */
export async function runDiscovery(
  flags: DiscoveryFlags,
  getEnv: (name: string) => string | undefined,
): Promise<number> {
  const what = flags.services ? "--services" : "--free-ports";
  if (flags.services && flags["free-ports"]) {
    throw new UsageError("give --services or --free-ports, not both");
  }
  if (flags.server === undefined) throw new UsageError(`${what} needs --server HOST:PORT`);
  const server = checkFlag("server", hostPortField, flags.server);
  const token = flags.token ?? envToken(getEnv);
  if (token === undefined || token === "") {
    throw new ConfigError(`${what} needs a token: pass --token or set BURROW_TOKEN`);
  }
  if (flags.fingerprint !== undefined) {
    checkFlag("fingerprint", fingerprintField, flags.fingerprint);
  }
  if (flags["no-tls"] && (flags.fingerprint !== undefined || flags.ca !== undefined)) {
    throw new UsageError("--no-tls cannot be combined with --fingerprint or --ca");
  }
  const tls = flags["no-tls"] ? false : {
    ...(flags.fingerprint === undefined ? {} : { fingerprint: flags.fingerprint }),
    ...(flags.ca === undefined ? {} : { ca: flags.ca }),
  };
  const options: DiscoveryOptions = { server, token: new Secret(token), tls };
  if (flags.group !== undefined) options.group = checkFlag("group", nameField, flags.group);
  if (flags["state-dir"] !== undefined) options.stateDir = flags["state-dir"];
  const proxy = flags.proxy !== undefined
    ? checkFlag("proxy", proxyField, flags.proxy)
    : envProxy(getEnv);
  if (proxy !== undefined) options.proxy = new Secret(proxy);
  try {
    if (flags.services) {
      const { items, truncated } = await discoverServices(options);
      if (flags.json) printLine(JSON.stringify({ services: items, truncated }, null, 2));
      else for (const line of servicesTable(items, truncated)) printLine(line);
    } else {
      const { items, truncated } = await discoverFreePorts(options);
      if (flags.json) printLine(JSON.stringify({ ranges: items, truncated }, null, 2));
      else printLine(freePortsLine(items, truncated));
    }
    return EXIT.ok;
  } catch (err) {
    if (err instanceof RefusedError) {
      printError(`burrow-client: ${refusalLine(err)}`);
      return EXIT.refused;
    }
    printError(`burrow-client: cannot ask ${server}: ${errorMessage(err)}`);
    return EXIT.failure;
  }
}

/** A plain table: one row per service, columns aligned. */
export function servicesTable(items: ServiceInfo[], truncated: boolean): string[] {
  if (items.length === 0) return ["no services are live"];
  const head = ["GROUP", "APP", "PORT", "USERS", "BYTES IN", "BYTES OUT", "SINCE", "DESCRIPTION"];
  const rows = items.map((s) => [
    s.group,
    s.app,
    s.transport === "udp" ? `udp/${s.port}` : String(s.port),
    String(s.connections),
    String(s.bytesIn),
    String(s.bytesOut),
    s.since.toISOString().replace(/\.\d+Z$/, "Z"),
    s.description ?? "",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd();
  const out = [line(head), ...rows.map(line)];
  if (truncated) out.push("(more services are live than one answer carries)");
  return out;
}

/** `free ports: 10000-10049,10051-10100 (101 ports)`. */
export function freePortsLine(ranges: Array<[number, number]>, truncated: boolean): string {
  if (ranges.length === 0) return "no free ports";
  const count = ranges.reduce((n, [from, to]) => n + to - from + 1, 0);
  const spec = ranges.map(([from, to]) => from === to ? `${from}` : `${from}-${to}`).join(",");
  return `free ports: ${spec} (${count} port${count === 1 ? "" : "s"}${
    truncated ? ", list truncated" : ""
  })`;
}
