/**
 * Field rules shared by the server and client config files and their flags,
 * so a value is judged the same way wherever it comes from.
 *
 * @module
 */

import { z } from "zod";
import { type HostPort, parseHostPort, parsePortSpec, type PortRange } from "../util/addr.ts";
import { ConfigError } from "../util/errors.ts";
import { isLogLevel, LOG_LEVELS, type LogLevel } from "../util/log_level.ts";
import { NAME_PATTERN } from "../protocol/protocol.ts";
import { parseProxyUrl } from "../transport/proxy_url.ts";

/** A group or app name. */
export const nameField = z.string().regex(
  NAME_PATTERN,
  "must be 1-63 lowercase letters, digits or dashes, starting with a letter or digit",
);

/** `HOST:PORT`, kept as text; parse it with {@linkcode hostPort}. */
export const hostPortField = z.string("must be HOST:PORT").superRefine((s, ctx) => {
  const parsed = parseHostPort(s);
  if (typeof parsed === "string") ctx.addIssue({ code: "custom", message: parsed });
});

/** A port spec such as `6000-6100,7022`. */
export const portSpecField = z.union([z.string(), z.int()], "must be ports like 6000-6100,7022")
  .transform((v) => String(v)).superRefine((s, ctx) => {
    const parsed = parsePortSpec(s);
    if (typeof parsed === "string") ctx.addIssue({ code: "custom", message: parsed });
  });

/** Seconds, a positive number up to a day. */
export const secondsField = z.number({ error: "must be a number of seconds" }).positive(
  "must be more than 0 seconds",
).max(86_400, "must be at most 86400 seconds");

/** A log level. */
export const logLevelField = z.enum(LOG_LEVELS, {
  error: `must be one of ${LOG_LEVELS.join(", ")}`,
});

/** Parses a value already checked by {@linkcode hostPortField}. */
export function hostPort(text: string): HostPort {
  return parseHostPort(text) as HostPort;
}

/** Parses a value already checked by {@linkcode portSpecField}. */
export function portRanges(text: string): PortRange[] {
  return parsePortSpec(text) as PortRange[];
}

/**
 * The `BURROW_TOKEN` environment variable, or undefined when it is unset,
 * empty, or not permitted to be read (then it cannot have been meant either).
 */
export function envToken(getEnv: (name: string) => string | undefined): string | undefined {
  try {
    return getEnv("BURROW_TOKEN") || undefined;
  } catch {
    return undefined;
  }
}

/** A proxy URL, `http://[USER:PASS@]HOST:PORT` or `socks5://...`, kept as text. */
export const proxyField = z.string("must be a proxy URL such as http://proxy.example:3128")
  .superRefine((text, ctx) => {
    const parsed = parseProxyUrl(text);
    if (typeof parsed === "string") ctx.addIssue({ code: "custom", message: parsed });
  });

/**
 * The `BURROW_PROXY` environment variable, checked, or undefined when it is
 * unset, empty, or not permitted to be read. A bad URL is a `ConfigError`
 * naming the variable (never the password).
 */
export function envProxy(getEnv: (name: string) => string | undefined): string | undefined {
  let text: string | undefined;
  try {
    text = getEnv("BURROW_PROXY") || undefined;
  } catch {
    return undefined;
  }
  if (text === undefined) return undefined;
  const parsed = parseProxyUrl(text);
  if (typeof parsed === "string") throw new ConfigError(`BURROW_PROXY: ${parsed}`);
  return text;
}

/** Checks a flag's value with the same rule as its key; throws naming the flag. */
export function checkFlag<T>(flag: string, schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new ConfigError(`--${flag}: ${result.error.issues[0]?.message ?? "invalid value"}`);
}

/** Parses `--heartbeat-timeout 5` style numbers before checking them. */
export function numberFlag(flag: string, text: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n)) {
    throw new ConfigError(`--${flag}: expected a number, got "${text}"`);
  }
  return n;
}

/** Checks a `--log-level` value. */
export function logLevelFlag(text: string): LogLevel {
  if (!isLogLevel(text)) {
    throw new ConfigError(`--log-level: must be one of ${LOG_LEVELS.join(", ")}, got "${text}"`);
  }
  return text;
}
