/**
 * The server's settings: the optional YAML file, overridden key by key by
 * flags, with the token falling back to `BURROW_TOKEN`.
 *
 * @module
 */

import { z } from "zod";
import type { HostPort, PortRange } from "../util/addr.ts";
import {
  checkFlag,
  envToken,
  hostPort,
  hostPortField,
  logLevelField,
  logLevelFlag,
  numberFlag,
  portRanges,
  portSpecField,
  secondsField,
} from "./fields.ts";
import { besideFile, configError, expandEnv, readYaml, validate, type YamlSource } from "./file.ts";
import { ConfigError } from "../util/errors.ts";
import type { LogLevel } from "../util/log_level.ts";
import type { ServerLimits } from "./limits.ts";
import { Secret } from "../util/secret.ts";
import { httpServerShape } from "./http_keys.ts";
import {
  type ClusterConfig,
  clusterConfig,
  clusterFileShape,
  type ClusterFlags,
} from "./cluster_keys.ts";

/** The server's settings, validated. */
export interface ServerConfig {
  bind: HostPort;
  /** Absent only with `noAuth`. */
  token?: Secret;
  noAuth: boolean;
  ports: PortRange[];
  publicHost: string;
  /** Seconds. */
  heartbeatTimeout: number;
  logLevel: LogLevel;
  /** False for plaintext; an object for the operator's own certificate; true for the generated CA. */
  tls: boolean | { certFile: string; keyFile: string };
  /** Where the generated CA is kept; undefined: the default folder. */
  stateDir?: string;
  /** The per-group credentials file, if any. */
  users?: string;
  /** Limits given in the file; the rest keep their defaults. */
  limits: Partial<ServerLimits>;
  /** The dashboard, when `dashboard.bind` or `--dashboard` turns it on. */
  dashboard?: DashboardConfig;
  /** The shared web listeners and certificates (`http`, `https`, `domain`, `acme`). */
  web?: WebConfig;
  /** The cluster, when `--cluster` or `cluster.store` turns it on. */
  cluster?: ClusterConfig;
}

/** The web side's settings; file names are resolved beside the config file. */
export interface WebConfig {
  http?: string;
  https?: string;
  domain?: string;
  cert?: string;
  key?: string;
  certs?: { cert: string; key: string }[];
  acme?: { email?: string; directory?: string; ca?: string };
}

/** The dashboard's settings (see `lib/dashboard/http.ts`). */
export interface DashboardConfig {
  bind: HostPort;
  user?: string;
  password?: Secret;
}

/** Flags as given on the command line; each overrides the key of the same name. */
export interface ServerFlags extends ClusterFlags {
  config?: string;
  bind?: string;
  token?: string;
  ports?: string;
  "public-host"?: string;
  "heartbeat-timeout"?: string;
  "log-level"?: string;
  "no-auth"?: boolean;
  "no-tls"?: boolean;
  "tls-cert"?: string;
  "tls-key"?: string;
  "state-dir"?: string;
  dashboard?: string;
  "dashboard-user"?: string;
  "dashboard-password"?: string;
  users?: string;
  http?: string;
  https?: string;
  domain?: string;
  "https-cert"?: string;
  "https-key"?: string;
}

const pathField = z.string("must be a file name").min(1, "must not be empty");

const publicHostField = z.string("must be a host name or address").min(1, "must not be empty");

const dashboardUserField = z.string("must be text").regex(
  /^[^:\s]{1,64}$/,
  "must be 1-64 characters without spaces or a colon",
);

const dashboardFile = z.strictObject({
  bind: hostPortField,
  user: dashboardUserField.optional(),
  password: z.string("must be text").min(1, "must not be empty").optional(),
}, "must be a map with bind, and optionally user and password");

const limitField = z.int("must be a whole number").min(1, "must be at least 1");

const limitsFile = z.strictObject({
  max_groups: limitField.optional(),
  max_apps_per_group: limitField.optional(),
  max_pending_users: limitField.optional(),
  handshakes_per_source: limitField.optional(),
  auth_failures: limitField.optional(),
  lockout_seconds: limitField.optional(),
  udp_flows_per_app: limitField.optional(),
  udp_flows_per_group: limitField.optional(),
}, "must be a map of limits");

const serverFile = z.strictObject({
  users: pathField.optional(),
  limits: limitsFile.optional(),
  bind: hostPortField.optional(),
  token: z.string().min(1, "must not be empty").optional(),
  no_auth: z.boolean().optional(),
  ports: portSpecField.optional(),
  public_host: publicHostField.optional(),
  heartbeat_timeout: secondsField.optional(),
  log_level: logLevelField.optional(),
  tls: z.union([
    z.literal(false),
    z.strictObject({ cert: pathField, key: pathField }),
  ], "must be false, or cert and key file names").optional(),
  state_dir: pathField.optional(),
  dashboard: dashboardFile.optional(),
  ...httpServerShape,
  ...clusterFileShape,
});

/** Defaults from the contract. */
export const SERVER_DEFAULTS = {
  bind: "0.0.0.0:7700",
  ports: "10000-20000",
  publicHost: "0.0.0.0",
  heartbeatTimeout: 30,
  logLevel: "info",
} as const;

/** Builds the config from flags, the file they name, and the environment. */
export async function loadServerConfig(
  flags: ServerFlags,
  getEnv: (name: string) => string | undefined,
): Promise<ServerConfig> {
  let file: z.infer<typeof serverFile> = {};
  let source: YamlSource | undefined;
  if (flags.config !== undefined) {
    source = await readYaml(flags.config);
    expandEnv(source, getEnv);
    file = validate(serverFile, source);
  }
  const bind = flags.bind !== undefined ? checkFlag("bind", hostPortField, flags.bind) : file.bind;
  const ports = flags.ports !== undefined
    ? checkFlag("ports", portSpecField, flags.ports)
    : file.ports;
  const timeout = flags["heartbeat-timeout"] !== undefined
    ? checkFlag(
      "heartbeat-timeout",
      secondsField,
      numberFlag("heartbeat-timeout", flags["heartbeat-timeout"]),
    )
    : file.heartbeat_timeout;
  const logLevel = flags["log-level"] !== undefined
    ? logLevelFlag(flags["log-level"])
    : file.log_level;
  const noAuth = flags["no-auth"] === true || file.no_auth === true;
  const tokenText = flags.token ?? file.token ?? envToken(getEnv);
  if (flags.token === "") throw new ConfigError("--token: must not be empty");
  const users = flags.users ?? besideFile(flags.config, file.users);
  if (flags.users === "") throw new ConfigError("--users: must not be empty");
  if (tokenText === undefined && !noAuth && users === undefined) {
    throw new ConfigError(
      "no token: pass --token, set BURROW_TOKEN or the token key, give --users FILE, or pass --no-auth to accept any client",
    );
  }
  const config: ServerConfig = {
    bind: hostPort(bind ?? SERVER_DEFAULTS.bind),
    noAuth,
    ports: portRanges(ports ?? SERVER_DEFAULTS.ports),
    publicHost: flags["public-host"] !== undefined
      ? checkFlag("public-host", publicHostField, flags["public-host"])
      : file.public_host ?? SERVER_DEFAULTS.publicHost,
    heartbeatTimeout: timeout ?? SERVER_DEFAULTS.heartbeatTimeout,
    logLevel: logLevel ?? SERVER_DEFAULTS.logLevel,
    tls: true,
    limits: limitsOf(file.limits ?? {}),
  };
  if (users !== undefined) {
    if (noAuth) throw new ConfigError("--users: cannot be combined with --no-auth");
    config.users = users;
  }
  if (tokenText !== undefined && !noAuth) config.token = new Secret(tokenText);
  config.tls = serverTls(flags, file.tls, flags.config);
  const stateDir = flags["state-dir"] ?? besideFile(flags.config, file.state_dir);
  if (flags["state-dir"] === "") throw new ConfigError("--state-dir: must not be empty");
  if (stateDir !== undefined) config.stateDir = stateDir;
  const dashboard = dashboardConfig(flags, file.dashboard, getEnv);
  if (dashboard) config.dashboard = dashboard;
  const web = webConfig(flags, file);
  if (web) config.web = web;
  const cluster = clusterConfig(
    flags,
    file.cluster,
    getEnv,
    (message) =>
      source && file.cluster ? configError(source, ["cluster"], message) : new ConfigError(message),
  );
  if (cluster) config.cluster = cluster;
  return config;
}

/** The web side from `--http`, `--https`, `--domain`, `--https-cert/-key` over the file's keys. */
function webConfig(
  flags: ServerFlags,
  file: z.infer<typeof serverFile>,
): WebConfig | undefined {
  const flag = (name: "http" | "https") =>
    flags[name] !== undefined ? checkFlag(name, hostPortField, flags[name]) : undefined;
  const http = flag("http") ?? file.http?.bind;
  const https = flag("https") ?? file.https?.bind;
  const domain = flags.domain !== undefined
    ? checkFlag("domain", httpServerShape.domain, flags.domain)
    : file.domain;
  const beside = (name: string | undefined) => besideFile(flags.config, name);
  const cert = flags["https-cert"] ?? beside(file.https?.cert);
  const key = flags["https-key"] ?? beside(file.https?.key);
  if ((cert === undefined) !== (key === undefined)) {
    throw new ConfigError("--https-cert and --https-key go together");
  }
  if (http === undefined && https === undefined) {
    if (file.acme || domain !== undefined || cert !== undefined) {
      throw new ConfigError(
        "domain, https.cert and acme need --http or --https (http.bind, https.bind)",
      );
    }
    return undefined;
  }
  if (file.acme && (http === undefined || https === undefined)) {
    throw new ConfigError(
      "acme: needs both --http (http.bind), where its challenges are answered, " +
        "and --https (https.bind), where the certificates are served",
    );
  }
  const web: WebConfig = {};
  if (http !== undefined) web.http = http;
  if (https !== undefined) web.https = https;
  if (domain !== undefined) web.domain = domain;
  if (cert !== undefined && key !== undefined) {
    web.cert = cert;
    web.key = key;
  }
  if (file.https?.certs) {
    web.certs = file.https.certs.map((c) => ({
      cert: beside(c.cert) as string,
      key: beside(c.key) as string,
    }));
  }
  if (file.acme) {
    const acme: NonNullable<WebConfig["acme"]> = {};
    if (file.acme.email !== undefined) acme.email = file.acme.email;
    if (file.acme.directory !== undefined) acme.directory = file.acme.directory;
    if (file.acme.ca !== undefined) acme.ca = beside(file.acme.ca) as string;
    web.acme = acme;
  }
  return web;
}

/** TLS from `--no-tls`, `--tls-cert`/`--tls-key` and the `tls` key, in that order. */
function serverTls(
  flags: ServerFlags,
  key: false | { cert: string; key: string } | undefined,
  configFile: string | undefined,
): ServerConfig["tls"] {
  const cert = flags["tls-cert"];
  const certKey = flags["tls-key"];
  if (flags["no-tls"] === true) {
    if (cert !== undefined || certKey !== undefined) {
      throw new ConfigError("--no-tls: cannot be combined with --tls-cert or --tls-key");
    }
    return false;
  }
  if (cert !== undefined || certKey !== undefined) {
    if (!cert || !certKey) {
      throw new ConfigError(
        "--tls-cert and --tls-key: give both, the certificate chain and its key",
      );
    }
    return { certFile: cert, keyFile: certKey };
  }
  if (key === false) return false;
  if (key !== undefined) {
    return {
      certFile: besideFile(configFile, key.cert)!,
      keyFile: besideFile(configFile, key.key)!,
    };
  }
  return true;
}

/**
 * The dashboard from `--dashboard*` flags over the `dashboard` key; the
 * password falls back to `BURROW_DASHBOARD_PASSWORD`. Undefined when off.
 */
function dashboardConfig(
  flags: ServerFlags,
  file: z.infer<typeof dashboardFile> | undefined,
  getEnv: (name: string) => string | undefined,
): DashboardConfig | undefined {
  const bind = flags.dashboard !== undefined
    ? checkFlag("dashboard", hostPortField, flags.dashboard)
    : file?.bind;
  const user = flags["dashboard-user"] !== undefined
    ? checkFlag("dashboard-user", dashboardUserField, flags["dashboard-user"])
    : file?.user;
  if (flags["dashboard-password"] === "") {
    throw new ConfigError("--dashboard-password: must not be empty");
  }
  const password = flags["dashboard-password"] ?? file?.password ?? envDashboardPassword(getEnv);
  if (bind === undefined) {
    if (flags["dashboard-user"] !== undefined || flags["dashboard-password"] !== undefined) {
      throw new ConfigError(
        "--dashboard-user and --dashboard-password need --dashboard HOST:PORT (or dashboard.bind)",
      );
    }
    return undefined;
  }
  const config: DashboardConfig = { bind: hostPort(bind) };
  if (user !== undefined) config.user = user;
  if (password !== undefined) config.password = new Secret(password);
  return config;
}

/** `BURROW_DASHBOARD_PASSWORD`, or undefined when unset, empty or not readable. */
function envDashboardPassword(getEnv: (name: string) => string | undefined): string | undefined {
  try {
    return getEnv("BURROW_DASHBOARD_PASSWORD") || undefined;
  } catch {
    return undefined;
  }
}

/** The file's `limits` keys as the library names them. */
function limitsOf(file: z.infer<typeof limitsFile>): Partial<ServerLimits> {
  const out: Partial<ServerLimits> = {};
  if (file.max_groups !== undefined) out.maxGroups = file.max_groups;
  if (file.max_apps_per_group !== undefined) out.maxAppsPerGroup = file.max_apps_per_group;
  if (file.max_pending_users !== undefined) out.maxPendingUsers = file.max_pending_users;
  if (file.handshakes_per_source !== undefined) {
    out.handshakesPerSource = file.handshakes_per_source;
  }
  if (file.auth_failures !== undefined) out.authFailures = file.auth_failures;
  if (file.lockout_seconds !== undefined) out.lockoutSeconds = file.lockout_seconds;
  if (file.udp_flows_per_app !== undefined) out.udpFlowsPerApp = file.udp_flows_per_app;
  if (file.udp_flows_per_group !== undefined) out.udpFlowsPerGroup = file.udp_flows_per_group;
  return out;
}
