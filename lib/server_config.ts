/**
 * The server's settings: the optional YAML file, overridden key by key by
 * flags, with the token falling back to `BURROW_TOKEN`.
 *
 * @module
 */

import { z } from "zod";
import type { HostPort, PortRange } from "./addr.ts";
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
} from "./config_fields.ts";
import { expandEnv, readYaml, validate } from "./config_file.ts";
import { ConfigError } from "./errors.ts";
import type { LogLevel } from "./log_level.ts";
import { Secret } from "./secret.ts";

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
  /** The dashboard, when `dashboard.bind` or `--dashboard` turns it on. */
  dashboard?: DashboardConfig;
}

/** The dashboard's settings (see `lib/dashboard.ts`). */
export interface DashboardConfig {
  bind: HostPort;
  user?: string;
  password?: Secret;
}

/** Flags as given on the command line; each overrides the key of the same name. */
export interface ServerFlags {
  config?: string;
  bind?: string;
  token?: string;
  ports?: string;
  "public-host"?: string;
  "heartbeat-timeout"?: string;
  "log-level"?: string;
  "no-auth"?: boolean;
  dashboard?: string;
  "dashboard-user"?: string;
  "dashboard-password"?: string;
}

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

const serverFile = z.strictObject({
  bind: hostPortField.optional(),
  token: z.string().min(1, "must not be empty").optional(),
  no_auth: z.boolean().optional(),
  ports: portSpecField.optional(),
  public_host: publicHostField.optional(),
  heartbeat_timeout: secondsField.optional(),
  log_level: logLevelField.optional(),
  dashboard: dashboardFile.optional(),
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
  if (flags.config !== undefined) {
    const source = await readYaml(flags.config);
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
  if (tokenText === undefined && !noAuth) {
    throw new ConfigError(
      "no token: pass --token, set BURROW_TOKEN or the token key, or pass --no-auth to accept any client",
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
  };
  if (tokenText !== undefined && !noAuth) config.token = new Secret(tokenText);
  const dashboard = dashboardConfig(flags, file.dashboard, getEnv);
  if (dashboard) config.dashboard = dashboard;
  return config;
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
