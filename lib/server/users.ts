/**
 * Per-group credentials (`--users FILE`): each entry names a group exactly,
 * or a family of groups by prefix (`ci-*`), with its own token, the public
 * ports it may claim, and how many apps and concurrent users it may have.
 * The most specific entry wins: an exact name, then the longest prefix.
 * Groups no entry matches fall back to the shared `--token` if there is one.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { z } from "zod";
import { parsePortSpec, type PortRange } from "../util/addr.ts";
import { portSpecField } from "../config/fields.ts";
import { configError, expandEnv, readYaml, validate } from "../config/file.ts";
import { ConfigError } from "../util/errors.ts";
import { NAME_PATTERN } from "../protocol/protocol.ts";
import { Secret } from "../util/secret.ts";
import { normalizeName } from "../util/hostname.ts";

/** One entry, as the library takes it. */
export interface UserSpec {
  /** A group name, or a prefix followed by `*` (`ci-*`). */
  group: string;
  /** This group's own secret. */
  token: string | Secret;
  /** Public ports its apps may claim (within the server's own); absent: any of the server's. */
  ports?: string;
  /** Most apps it may expose at once. */
  maxApps?: number;
  /** Most user connections open at once across its apps. */
  maxConnections?: number;
  /** Host names its web apps may claim (`blog.example.org`, `*.team.example.org`); absent: any free one. */
  hosts?: string[];
}

/** What a group may do, once its entry is found. */
export interface Quota {
  /** The entry's pattern, for log lines. */
  entry: string;
  ports?: PortRange[];
  maxApps?: number;
  maxConnections?: number;
  /** Host name patterns its web apps may claim; absent: any free name. */
  hosts?: string[];
}

/** The credential a group must prove, and its quota (none for the shared token). */
export interface Credential {
  token: Secret;
  quota?: Quota;
}

interface Entry extends Quota {
  token: Secret;
}

const PATTERN = /^[a-z0-9][a-z0-9-]{0,61}\*$|^\*$/;

/** Looks credentials up by group name. */
export class Credentials {
  #exact = new Map<string, Entry>();
  #prefixes: Array<{ prefix: string; entry: Entry }> = [];
  #shared: Secret | undefined;

  /** Throws `ConfigError` for a malformed entry or a pattern listed twice. */
  constructor(users: readonly UserSpec[], shared?: Secret) {
    this.#shared = shared;
    users.forEach((u, i) => {
      const where = `users[${i}]`;
      const entry = toEntry(u, where);
      if (u.group.endsWith("*")) {
        const prefix = u.group.slice(0, -1);
        if (this.#prefixes.some((p) => p.prefix === prefix)) {
          throw new ConfigError(`${where}.group: "${u.group}" is listed twice`);
        }
        this.#prefixes.push({ prefix, entry });
      } else {
        if (this.#exact.has(u.group)) {
          throw new ConfigError(`${where}.group: "${u.group}" is listed twice`);
        }
        this.#exact.set(u.group, entry);
      }
    });
    this.#prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** How many entries there are. */
  get size(): number {
    return this.#exact.size + this.#prefixes.length;
  }

  /** The credential for `group`, or undefined when no entry matches and there is no shared token. */
  lookup(group: string): Credential | undefined {
    const entry = this.#exact.get(group) ??
      this.#prefixes.find((p) => group.startsWith(p.prefix))?.entry;
    if (entry === undefined) {
      return this.#shared === undefined ? undefined : { token: this.#shared };
    }
    const { token, ...quota } = entry;
    return { token, quota };
  }
}

function toEntry(u: UserSpec, where: string): Entry {
  if (!NAME_PATTERN.test(u.group) && !PATTERN.test(u.group)) {
    throw new ConfigError(
      `${where}.group: "${
        u.group.slice(0, 80)
      }" must be a group name or a prefix ending in * (ci-*)`,
    );
  }
  const token = typeof u.token === "string" ? new Secret(u.token) : u.token;
  if (token.reveal() === "") throw new ConfigError(`${where}.token: must not be empty`);
  const entry: Entry = { entry: u.group, token };
  if (u.ports !== undefined) {
    const ranges = parsePortSpec(u.ports);
    if (typeof ranges === "string") throw new ConfigError(`${where}.ports: ${ranges}`);
    entry.ports = ranges;
  }
  if (u.hosts !== undefined) {
    const hosts = u.hosts.map((h) => h.includes(":") ? undefined : normalizeName(h, true));
    const bad = hosts.findIndex((h) => h === undefined);
    if (bad >= 0) {
      throw new ConfigError(
        `${where}.hosts[${bad}]: "${u.hosts[bad]}" is not a host name or *.pattern`,
      );
    }
    entry.hosts = hosts as string[];
  }
  for (const key of ["maxApps", "maxConnections"] as const) {
    const value = u[key];
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value < 0) {
      throw new ConfigError(`${where}.${key}: must be a whole number, 0 or more`);
    }
    entry[key] = value;
  }
  return entry;
}

const usersFile = z.array(
  z.strictObject({
    group: z.string("must be a group name or prefix-*").refine(
      (g) => NAME_PATTERN.test(g) || PATTERN.test(g),
      "must be a group name, or a prefix ending in * (ci-*)",
    ),
    token: z.string("must be text").min(1, "must not be empty"),
    ports: portSpecField.optional(),
    max_apps: z.int("must be a whole number").min(0, "must be 0 or more").optional(),
    max_connections: z.int("must be a whole number").min(0, "must be 0 or more").optional(),
    hosts: z.array(
      z.string("must be a host name").refine(
        (h) => normalizeName(h, true) !== undefined && !h.includes(":"),
        "must be a host name such as blog.example.org or *.team.example.org",
      ),
      "must be a list of host names",
    ).optional(),
  }),
  "must be a list of groups, each with group and token",
);

/**
 * Reads a users file (with `${VAR}` expansion), checking every entry; a
 * pattern listed twice names its line. Warns when others may read the file.
 */
export async function loadUsersFile(
  file: string,
  getEnv: (name: string) => string | undefined,
  log?: Logger,
): Promise<UserSpec[]> {
  const source = await readYaml(file);
  expandEnv(source, getEnv);
  const data = validate(usersFile, source);
  const seen = new Set<string>();
  data.forEach((u, i) => {
    if (seen.has(u.group)) {
      throw configError(source, [i, "group"], `"${u.group}" is listed twice`);
    }
    seen.add(u.group);
  });
  if (log !== undefined) await warnIfShared(file, log);
  return data.map((u) => {
    const spec: UserSpec = { group: u.group, token: new Secret(u.token) };
    if (u.ports !== undefined) spec.ports = u.ports;
    if (u.max_apps !== undefined) spec.maxApps = u.max_apps;
    if (u.max_connections !== undefined) spec.maxConnections = u.max_connections;
    if (u.hosts !== undefined) spec.hosts = u.hosts;
    return spec;
  });
}

/** A users file holds secrets: say so when group or others may read it. */
async function warnIfShared(file: string, log: Logger): Promise<void> {
  if (Deno.build.os === "windows") return;
  try {
    const mode = (await Deno.stat(file)).mode;
    if (mode !== null && (mode & 0o077) !== 0) {
      log.warn(
        `users file ${file} can be read by others (mode ${(mode & 0o777).toString(8)}): ` +
          `it holds tokens; chmod 600 it`,
      );
    }
  } catch {
    // unreadable stat: the read itself already succeeded, nothing to add
  }
}
