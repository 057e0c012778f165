/**
 * The client's group file: which server, which token, which group, and the
 * apps it exposes. Flags `--server`, `--token` and `--log-level` override it.
 *
 * @module
 */

import { z } from "zod";
import type { HostPort } from "./addr.ts";
import {
  checkFlag,
  hostPort,
  hostPortField,
  logLevelFlag,
  nameField,
  secondsField,
} from "./config_fields.ts";
import { configError, expandEnv, readYaml, validate } from "./config_file.ts";
import { ConfigError } from "./errors.ts";
import type { LogLevel } from "./log_level.ts";
import { MAX_APPS_PER_GROUP } from "./protocol.ts";
import { Secret } from "./secret.ts";

/** One app of the group, validated. */
export interface AppConfig {
  name: string;
  local: HostPort;
  /** 0: the server picks. */
  remotePort: number;
  /** Free text shown by discovery. */
  description?: string;
}

/** The group file merged with flags, validated. */
export interface ClientConfig {
  file: string;
  server: HostPort;
  token: Secret;
  group: string;
  /** Seconds between pings. */
  heartbeatInterval: number;
  logLevel: LogLevel;
  apps: AppConfig[];
  /** Where to serve the client's `GET /api/status`, if anywhere. */
  admin?: HostPort;
}

/** Flags that override the file. */
export interface ClientFlags {
  server?: string;
  token?: string;
  "log-level"?: string;
}

const appEntry = z.strictObject({
  name: nameField,
  local: hostPortField,
  remote_port: z.int("must be a whole port number").min(0, "must be 0-65535").max(
    65535,
    "must be 0-65535",
  ).optional(),
  description: z.string("must be text").max(1024, "must be at most 1024 characters").optional(),
});

const groupFile = z.strictObject({
  server: hostPortField.optional(),
  token: z.string().min(1, "must not be empty").optional(),
  group: nameField,
  heartbeat_interval: secondsField.optional(),
  admin: hostPortField.optional(),
  apps: z.array(appEntry, "must be a list of apps").min(1, "must list at least one app").max(
    MAX_APPS_PER_GROUP,
    `must list at most ${MAX_APPS_PER_GROUP} apps`,
  ),
});

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
    ? checkFlag("server", hostPortField, flags.server)
    : data.server;
  if (serverText === undefined) {
    throw new ConfigError(`${file}: server: is required (set it in the file or pass --server)`);
  }
  if (flags.token === "") throw new ConfigError("--token: must not be empty");
  const token = flags.token ?? data.token;
  if (token === undefined) {
    throw new ConfigError(`${file}: token: is required (set it in the file or pass --token)`);
  }
  const config: ClientConfig = {
    file,
    server: hostPort(serverText),
    token: new Secret(token),
    group: data.group,
    heartbeatInterval: data.heartbeat_interval ?? DEFAULT_HEARTBEAT_INTERVAL,
    logLevel: flags["log-level"] !== undefined ? logLevelFlag(flags["log-level"]) : "info",
    apps: data.apps.map((a) => {
      const app: AppConfig = {
        name: a.name,
        local: hostPort(a.local),
        remotePort: a.remote_port ?? 0,
      };
      if (a.description !== undefined) app.description = a.description;
      return app;
    }),
  };
  if (data.admin !== undefined) config.admin = hostPort(data.admin);
  return config;
}
