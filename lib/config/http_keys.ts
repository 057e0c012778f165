/**
 * The config keys of web apps, ready for the group and server file loaders
 * to take in (CONTRACT "App types"):
 *
 * - in a group file, per app: `type` (`tcp`, `http`, `tls`, `udp`),
 *   `subdomain`, `hostnames`, `paths`, `auth`, `host_header`, `https_only`,
 *   and `inspect: HOST:PORT` for the group; a key that does not fit the
 *   app's type (a `subdomain` on a `tcp` app, a `remote_port` on an `http`
 *   one) is a config error naming the key;
 * - in a server file: `http.bind`, `https.bind`, `https.cert`, `https.key`,
 *   `https.certs: [{cert, key}]`, `domain`, `acme.email`, `acme.directory`,
 *   `acme.ca`.
 *
 * Each part is a zod shape to spread into the loader's object, plus a
 * refinement for the type rules and a function that turns the parsed keys
 * into the settings the programs use.
 *
 * @module
 */

import { z } from "zod";
import { normalizeName } from "../util/hostname.ts";
import { Secret } from "../util/secret.ts";
import { hostPortField, nameField } from "./fields.ts";

/** The app types of the contract. */
export const APP_TYPES = ["tcp", "http", "tls", "udp"] as const;
/** An app's type. */
export type AppType = typeof APP_TYPES[number];

/** Most names and path prefixes one app may claim. */
export const MAX_APP_HOSTNAMES = 32;

const hostnameField = z.string("must be a host name").refine(
  (text) => normalizeName(text, true) !== undefined && !text.includes(":"),
  "must be a host name such as www.example.org or *.example.org (no port, no address)",
);

const pathField = z.string("must be a path").regex(
  /^\/[\x21-\x7e]{0,1023}$/,
  "must be a path prefix starting with / (no spaces)",
).refine((p) => !p.includes("?") && !p.includes("#"), "must be a path, without ? or #");

/** Keys an app entry of a group file may have besides name, local and remote_port. */
export const httpAppShape = {
  type: z.enum(APP_TYPES, { error: "must be tcp, http, tls or udp" }).optional(),
  subdomain: nameField.optional(),
  hostnames: z.array(hostnameField, "must be a list of host names").min(
    1,
    "must list at least one name (leave the key out for none)",
  ).max(MAX_APP_HOSTNAMES, `must list at most ${MAX_APP_HOSTNAMES} names`).optional(),
  paths: z.array(pathField, "must be a list of path prefixes such as /api").min(1).max(
    MAX_APP_HOSTNAMES,
    `must list at most ${MAX_APP_HOSTNAMES} prefixes`,
  ).optional(),
  auth: z.strictObject({
    user: z.string("must be a user name").min(1, "must not be empty").regex(
      /^[^:\s]+$/,
      "must have no colon or space",
    ),
    password: z.string("must be a password").min(1, "must not be empty"),
  }, "must be {user, password}").optional(),
  host_header: z.string("must be a Host value").regex(
    /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$/,
    "must be a host name or address, with an optional :PORT",
  ).optional(),
  https_only: z.boolean("must be true or false").optional(),
};

/** Which of the keys above each type accepts (`remote_port` is the loader's own key). */
const KEYS_FOR: Record<AppType, readonly string[]> = {
  tcp: ["remote_port", "proxy_protocol"],
  udp: ["remote_port", "udp_idle_timeout"],
  http: ["subdomain", "hostnames", "paths", "auth", "host_header", "https_only"],
  // A tls app's service gets the user's bytes as they came, so a PROXY header can go first.
  tls: ["subdomain", "hostnames", "proxy_protocol"],
};
const TYPE_KEYS = [
  "remote_port",
  "proxy_protocol", // the loader's own key too; an http app's requests come from the edge
  "udp_idle_timeout",
  ...Object.keys(httpAppShape).filter((k) => k !== "type"),
];

/**
 * A refinement for an app entry: reports every key its type does not take,
 * as an issue on that key (so the loader's message names it).
 */
export function checkTypeKeys(entry: Record<string, unknown>, ctx: z.RefinementCtx): void {
  const type = (entry.type ?? "tcp") as AppType;
  for (const key of TYPE_KEYS) {
    if (entry[key] === undefined || KEYS_FOR[type].includes(key)) continue;
    ctx.addIssue({
      code: "custom",
      path: [key],
      message: `is not a key of ${type === "http" ? "an" : "a"} ${type} app${
        type === "tcp" ? " (set type: http or type: tls for names)" : ""
      }`,
    });
  }
}

/** An `http` or `tls` app's settings, from its entry. */
export interface WebAppConfig {
  type: "http" | "tls";
  /** `SUBDOMAIN.DOMAIN`; absent: `APP-GROUP.DOMAIN` when the server has a domain. */
  subdomain?: string;
  /** More names, normalised (`*.` wildcards kept). */
  hostnames: string[];
  paths: string[];
  auth?: { user: string; password: Secret };
  hostHeader?: string;
  httpsOnly: boolean;
}

/** The parsed web keys of one app entry. */
export type WebAppKeys = { [K in keyof typeof httpAppShape]?: z.infer<typeof httpAppShape[K]> };

/** The web settings of an entry whose type is `http` or `tls`; undefined for the others. */
export function webAppConfig(entry: WebAppKeys): WebAppConfig | undefined {
  if (entry.type !== "http" && entry.type !== "tls") return undefined;
  const out: WebAppConfig = {
    type: entry.type,
    hostnames: (entry.hostnames ?? []).map((h) => normalizeName(h, true) as string),
    paths: entry.paths ?? [],
    httpsOnly: entry.https_only ?? false,
  };
  if (entry.subdomain !== undefined) out.subdomain = entry.subdomain;
  if (entry.auth) out.auth = { user: entry.auth.user, password: new Secret(entry.auth.password) };
  if (entry.host_header !== undefined) out.hostHeader = entry.host_header;
  return out;
}

/** The group file's `inspect` key: where the request inspector serves. */
export const inspectField = hostPortField;

const pemFile = z.string("must be a file name").min(1, "must not be empty");

/** Keys of a server file for the web listeners and certificates. */
export const httpServerShape = {
  http: z.strictObject({ bind: hostPortField }, "must be {bind: HOST:PORT}").optional(),
  https: z.strictObject({
    bind: hostPortField,
    cert: pemFile.optional(),
    key: pemFile.optional(),
    certs: z.array(
      z.strictObject({ cert: pemFile, key: pemFile }, "must be {cert, key}"),
      "must be a list of {cert, key}",
    ).max(256).optional(),
  }, "must be {bind, cert, key, certs}").refine(
    (h) => (h.cert === undefined) === (h.key === undefined),
    "cert and key go together",
  ).optional(),
  domain: z.string("must be a domain name").refine(
    (d) => normalizeName(d) !== undefined && !d.includes(":") && d.includes("."),
    "must be a domain name such as example.org",
  ).optional(),
  acme: z.strictObject({
    email: z.email("must be an email address").optional(),
    directory: z.url({ protocol: /^https$/, error: "must be an https:// URL" }).optional(),
    ca: pemFile.optional(),
  }, "must be {email, directory, ca}").optional(),
};

/**
 * A refinement for the server file: ACME answers its challenges on the
 * plain listener, so `acme` needs `http.bind`, and certificates need
 * `https.bind` to be of use.
 */
export function checkHttpServerKeys(
  file: { http?: unknown; https?: unknown; acme?: unknown },
  ctx: z.RefinementCtx,
): void {
  if (file.acme !== undefined && file.http === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["acme"],
      message: "needs http.bind (or --http): ACME's HTTP-01 challenges are answered there",
    });
  }
  if (file.acme !== undefined && file.https === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["acme"],
      message: "needs https.bind (or --https): the certificates are served there",
    });
  }
}
