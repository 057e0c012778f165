/**
 * Which names a web app claims and how its `ready` line shows them, as the
 * contract fixes: `SUBDOMAIN.DOMAIN` (by default `APP-GROUP.DOMAIN`) when
 * the server has a domain, plus the app's own `hostnames`; each name
 * checked against the group's users-file `hosts` patterns when it has an
 * entry; URLs with only the schemes the server listens on, and the port
 * only when it is not the scheme's default.
 *
 * @module
 */

import { nameAllowed, normalizeName } from "../util/hostname.ts";

/** What decides an app's names. */
export interface NameRequest {
  group: string;
  app: string;
  subdomain?: string;
  hostnames: readonly string[];
  /** The server's `--domain`, if any. */
  domain?: string;
}

/**
 * The names an app claims, normalised and without repeats; empty when it
 * asks for none and the server has no domain (the server refuses that).
 */
export function appNames(request: NameRequest): string[] {
  const names: string[] = [];
  if (request.domain !== undefined) {
    const label = request.subdomain ?? `${request.app}-${request.group}`;
    const name = normalizeName(`${label}.${request.domain}`);
    if (name !== undefined) names.push(name);
  }
  for (const raw of request.hostnames) {
    const name = normalizeName(raw, true);
    if (name !== undefined && !names.includes(name)) names.push(name);
  }
  return names;
}

/** Why a claim is refused before the route table is asked, if it is. */
export type NamePolicyRefusal = { code: "host_not_allowed"; host: string; message: string };

/**
 * Checks names against a users-file entry's `hosts` patterns (undefined:
 * the group has no such restriction).
 */
export function checkNames(
  names: readonly string[],
  patterns: readonly string[] | undefined,
): NamePolicyRefusal | undefined {
  if (names.length === 0) {
    return {
      code: "host_not_allowed",
      host: "",
      message: "the app names no host: give it hostnames, or start the server with --domain",
    };
  }
  if (patterns === undefined) return undefined;
  const host = names.find((n) => !nameAllowed(n, patterns));
  if (host === undefined) return undefined;
  return {
    code: "host_not_allowed",
    host,
    message: `"${host}" is not among the hosts the users file allows this group`,
  };
}

/** The server's web listeners as users reach them. */
export interface PublicWebPorts {
  http?: number;
  https?: number;
}

/**
 * The addresses of a `ready` line for a web app: for `http`,
 * `https://NAME[:PORT]/` then `http://NAME[:PORT]/` for each name (only
 * the schemes listened on); for `tls`, `tls://NAME:PORT`. Wildcard names
 * are shown as they are.
 */
export function readyUrls(
  type: "http" | "tls",
  names: readonly string[],
  ports: PublicWebPorts,
): string[] {
  const out: string[] = [];
  for (const name of names) {
    if (type === "tls") {
      if (ports.https !== undefined) out.push(`tls://${name}:${ports.https}`);
      continue;
    }
    if (ports.https !== undefined) {
      out.push(`https://${name}${ports.https === 443 ? "" : `:${ports.https}`}/`);
    }
    if (ports.http !== undefined) {
      out.push(`http://${name}${ports.http === 80 ? "" : `:${ports.http}`}/`);
    }
  }
  return out;
}
