/**
 * The client's group file: which server, which token, which group, and the
 * apps it exposes. Flags `--server`, `--token` and `--log-level` override it.
 *
 * @module
 */

import { z } from "zod";
import type { HostPort } from "../util/addr.ts";
import {
  checkFlag,
  envProxy,
  hostPort,
  hostPortField,
  logLevelFlag,
  nameField,
  proxyField,
  secondsField,
} from "./fields.ts";
import { besideFile, configError, expandEnv, readYaml, validate } from "./file.ts";
import { ConfigError } from "../util/errors.ts";
import type { LogLevel } from "../util/log_level.ts";
import { parseCidr } from "../util/cidr.ts";
import { BALANCE_POLICIES, type BalancePolicy, MAX_ALLOW_FROM } from "../protocol/protocol.ts";
import { DEFAULT_UDP_IDLE_TIMEOUT } from "../protocol/control.ts";
import type { HealthOptions } from "./health.ts";
import { MAX_APPS_PER_GROUP, MAX_SERVERS } from "./limits.ts";
import { normalizeFingerprint } from "../transport/certs.ts";
import { Secret } from "../util/secret.ts";
import {
  checkTypeKeys,
  httpAppShape,
  inspectField,
  type WebAppConfig,
  webAppConfig,
} from "./http_keys.ts";

/** One app of the group, validated. */
export interface AppConfig {
  name: string;
  local: HostPort;
  /** 0: the server picks. */
  remotePort: number;
  /** Free text shown by discovery. */
  description?: string;
  /** Users allowed to connect, as CIDR ranges; absent: everyone. */
  allowFrom?: string[];
  /** The PROXY protocol header sent to the local service first, if any. */
  proxyProtocol?: "v1" | "v2";
  /** How a shared group's users are spread over this app's replicas. */
  balance?: BalancePolicy;
  /** Health checks of the local service, if any. */
  health?: HealthOptions;
  /** An http or tls app's names and settings (absent for tcp apps). */
  web?: WebAppConfig;
  /** A udp app (`type: udp`): its flows' idle timeout in seconds. */
  udp?: { idleTimeout: number };
}

/** The group file merged with flags, validated. */
export interface ClientConfig {
  file: string;
  /** The server, or a cluster's nodes: tried in this order, round and round. */
  server: HostPort[];
  token: Secret;
  group: string;
  /** Several clients serve the group (`shared: true`). */
  shared: boolean;
  /** Seconds between pings. */
  heartbeatInterval: number;
  logLevel: LogLevel;
  apps: AppConfig[];
  /** TLS to the server: false for plaintext, or how to verify it. */
  tls: false | { fingerprint?: string; ca?: string };
  /** Where servers trusted on first use are recorded; undefined: the default folder. */
  stateDir?: string;
  /** Where to serve the client's `GET /api/status`, if anywhere. */
  admin?: HostPort;
  /** Where the request inspector serves its page, if anywhere. */
  inspect?: HostPort;
  /** The proxy to reach the server through (its URL, checked), if any. */
  proxy?: Secret;
}

/** Flags that override the file. */
export interface ClientFlags {
  server?: string;
  token?: string;
  "log-level"?: string;
  fingerprint?: string;
  ca?: string;
  "no-tls"?: boolean;
  "state-dir"?: string;
  proxy?: string;
}

const cidrField = z.string("must be an address range such as 203.0.113.0/24").superRefine(
  (text, ctx) => {
    const parsed = parseCidr(text);
    if (typeof parsed === "string") ctx.addIssue({ code: "custom", message: parsed });
  },
);

/** `sha256:HEX`, colons and case as the user likes. */
export const fingerprintField = z.string("must be sha256: and 64 hex digits").refine(
  (text) => normalizeFingerprint(text) !== undefined,
  "must be sha256: and 64 hex digits (colons allowed), as the server prints it",
);

/** `health: { tcp: true }` or `health: { http: /healthz }`, with `interval` and `fails`. */
const healthEntry = z.strictObject({
  tcp: z.literal(true, "must be true (or leave it out)").optional(),
  http: z.string("must be a path such as /healthz").regex(
    /^\/[\x21-\x7e]*$/,
    "must be a path starting with / (no spaces or control characters)",
  ).optional(),
  interval: secondsField.optional(),
  fails: z.int("must be a whole number").min(1, "must be at least 1").max(
    1000,
    "must be at most 1000",
  ).optional(),
}, "must be a map such as { tcp: true } or { http: /healthz }").refine(
  (h) => (h.tcp === true) !== (h.http !== undefined),
  "must give exactly one of tcp: true and http: /path",
);

const appEntry = z.strictObject({
  name: nameField,
  local: hostPortField,
  remote_port: z.int("must be a whole port number").min(0, "must be 0-65535").max(
    65535,
    "must be 0-65535",
  ).optional(),
  description: z.string("must be text").max(1024, "must be at most 1024 characters").optional(),
  allow_from: z.array(cidrField, "must be a list of address ranges such as 203.0.113.0/24")
    .min(1, "must list at least one range (leave the key out to allow everyone)")
    .max(MAX_ALLOW_FROM, `must list at most ${MAX_ALLOW_FROM} ranges`)
    .optional(),
  proxy_protocol: z.enum(["v1", "v2"], { error: "must be v1 or v2" }).optional(),
  balance: z.enum(BALANCE_POLICIES, { error: "must be round_robin or least_conn" }).optional(),
  health: healthEntry.optional(),
  udp_idle_timeout: secondsField.optional(),
  ...httpAppShape,
}).superRefine(checkTypeKeys).superRefine((entry, ctx) => {
  if (entry.type !== "udp") return;
  for (const key of ["proxy_protocol", "health"] as const) {
    if (entry[key] === undefined) continue;
    ctx.addIssue({ code: "custom", path: [key], message: "is not a key of a udp app" });
  }
});

const groupFile = z.strictObject({
  server: z.union([
    hostPortField,
    z.array(hostPortField, "must be HOST:PORT or a list of them")
      .min(1, "must list at least one server")
      .max(MAX_SERVERS, `must list at most ${MAX_SERVERS} servers`),
  ], "must be HOST:PORT or a list of them").optional(),
  token: z.string().min(1, "must not be empty").optional(),
  group: nameField,
  shared: z.boolean("must be true or false").optional(),
  heartbeat_interval: secondsField.optional(),
  tls: z.boolean("must be true or false").optional(),
  fingerprint: fingerprintField.optional(),
  ca: z.string("must be a file name").min(1, "must not be empty").optional(),
  state_dir: z.string("must be a folder name").min(1, "must not be empty").optional(),
  admin: hostPortField.optional(),
  inspect: inspectField.optional(),
  proxy: proxyField.optional(),
  apps: z.array(appEntry, "must be a list of apps").min(1, "must list at least one app").max(
    MAX_APPS_PER_GROUP,
    `must list at most ${MAX_APPS_PER_GROUP} apps`,
  ),
});

/** `--server a:7700,b:7700`: one or more servers, comma-separated. */
function serverFlag(text: string): string[] {
  const list = text.split(",").map((s) => s.trim());
  if (list.length > MAX_SERVERS) {
    throw new ConfigError(`--server: must list at most ${MAX_SERVERS} servers`);
  }
  return list.map((s) => checkFlag("server", hostPortField, s));
}

/** Default seconds between pings. */
export const DEFAULT_HEARTBEAT_INTERVAL = 10;

/** Reads, expands and validates a group file, then applies flags. */
export async function loadClientConfig(
  file: string,
  flags: ClientFlags,
  getEnv: (name: string) => string | undefined,
): Promise<ClientConfig> {
  const source = await readYaml(file);
  expandEnv(source, getEnv);
  const data = validate(groupFile, source);
  const seen = new Map<string, number>();
  data.apps.forEach((app, i) => {
    if (seen.has(app.name)) {
      throw configError(source, ["apps", i, "name"], `app "${app.name}" is listed twice`);
    }
    seen.set(app.name, i);
  });
  const serverText = flags.server !== undefined
    ? serverFlag(flags.server)
    : typeof data.server === "string"
    ? [data.server]
    : data.server;
  if (serverText === undefined) {
    throw new ConfigError(`${file}: server: is required (set it in the file or pass --server)`);
  }
  if (flags.token === "") throw new ConfigError("--token: must not be empty");
  const token = flags.token ?? data.token;
  if (token === undefined) {
    throw new ConfigError(`${file}: token: is required (set it in the file or pass --token)`);
  }
  const tls = clientTls(file, data, flags);
  const stateDir = flags["state-dir"] ?? besideFile(file, data.state_dir);
  const config: ClientConfig = {
    file,
    tls,
    ...(stateDir === undefined ? {} : { stateDir }),
    server: serverText.map(hostPort),
    token: new Secret(token),
    group: data.group,
    shared: data.shared ?? false,
    heartbeatInterval: data.heartbeat_interval ?? DEFAULT_HEARTBEAT_INTERVAL,
    logLevel: flags["log-level"] !== undefined ? logLevelFlag(flags["log-level"]) : "info",
    apps: data.apps.map((a) => {
      const app: AppConfig = {
        name: a.name,
        local: hostPort(a.local),
        remotePort: a.remote_port ?? 0,
      };
      if (a.description !== undefined) app.description = a.description;
      if (a.allow_from !== undefined) app.allowFrom = a.allow_from;
      if (a.proxy_protocol !== undefined) app.proxyProtocol = a.proxy_protocol;
      if (a.balance !== undefined) app.balance = a.balance;
      if (a.health !== undefined) {
        const { tcp, http, interval, fails } = a.health;
        app.health = {
          ...(tcp === undefined ? {} : { tcp }),
          ...(http === undefined ? {} : { http }),
          ...(interval === undefined ? {} : { interval }),
          ...(fails === undefined ? {} : { fails }),
        };
      }
      const web = webAppConfig(a);
      if (web !== undefined) app.web = web;
      if (a.type === "udp") {
        app.udp = { idleTimeout: a.udp_idle_timeout ?? DEFAULT_UDP_IDLE_TIMEOUT };
      }
      return app;
    }),
  };
  if (data.admin !== undefined) config.admin = hostPort(data.admin);
  if (data.inspect !== undefined) config.inspect = hostPort(data.inspect);
  const proxy = clientProxy(data.proxy, flags.proxy, getEnv);
  if (proxy !== undefined) config.proxy = proxy;
  return config;
}

/** `--proxy`, else the file's `proxy`, else `BURROW_PROXY`; each checked where it came from. */
function clientProxy(
  key: string | undefined,
  flag: string | undefined,
  getEnv: (name: string) => string | undefined,
): Secret | undefined {
  const text = flag !== undefined ? checkFlag("proxy", proxyField, flag) : key ?? envProxy(getEnv);
  return text === undefined ? undefined : new Secret(text);
}

/** TLS from `--no-tls`, `--fingerprint`, `--ca` and the `tls`, `fingerprint`, `ca` keys. */
function clientTls(
  file: string,
  data: { tls?: boolean | undefined; fingerprint?: string | undefined; ca?: string | undefined },
  flags: ClientFlags,
): ClientConfig["tls"] {
  if (flags.fingerprint !== undefined) {
    checkFlag("fingerprint", fingerprintField, flags.fingerprint);
  }
  if (flags.ca === "") throw new ConfigError("--ca: must not be empty");
  const off = flags["no-tls"] === true || data.tls === false;
  const fingerprint = flags.fingerprint ?? data.fingerprint;
  const ca = flags.ca ?? besideFile(file, data.ca);
  if (off) {
    if (fingerprint !== undefined || ca !== undefined) {
      throw new ConfigError(
        `${file}: tls: is false, so ${
          fingerprint !== undefined ? "fingerprint" : "ca"
        } would be ignored; remove one`,
      );
    }
    return false;
  }
  if (fingerprint !== undefined && ca !== undefined) {
    throw new ConfigError(`${file}: fingerprint: give fingerprint or ca, not both`);
  }
  if (fingerprint !== undefined) return { fingerprint };
  if (ca !== undefined) return { ca };
  return {};
}
