/**
 * Host names as burrow compares them, for routing (the edge), claims (the
 * server) and config checks (both programs): lower case, no port, no
 * trailing dot, DNS labels only; a leading `*.` label where wildcards are
 * allowed.
 *
 * @module
 */

/** The largest name a claim or lookup considers (RFC 1035: 253 characters). */
const MAX_NAME = 253;
const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/**
 * A host name as routes and lookups compare it: lower case, without a port
 * or a trailing dot. Returns undefined for anything that is not a DNS name
 * (an IP literal, an empty label, characters a name cannot have). With
 * `wildcard`, a leading `*.` label is allowed.
 *
 * @example
 * ```ts
 * normalizeName("Blog.Example.org.:8080"); // "blog.example.org"
 * normalizeName("*.example.org", true);     // "*.example.org"
 * normalizeName("[::1]:80");                // undefined
 * ```
 */
export function normalizeName(raw: string, wildcard = false): string | undefined {
  let name = raw.trim().toLowerCase();
  if (name.startsWith("[")) return undefined; // an IPv6 literal names no app
  const colon = name.lastIndexOf(":");
  if (colon >= 0) {
    if (!/^\d{1,5}$/.test(name.slice(colon + 1))) return undefined;
    name = name.slice(0, colon);
  }
  if (name.endsWith(".")) name = name.slice(0, -1);
  if (name.length === 0 || name.length > MAX_NAME) return undefined;
  const labels = name.split(".");
  const first = wildcard && labels[0] === "*" ? 1 : 0;
  if (first === 1 && labels.length < 3) return undefined; // `*.org` would take a whole TLD
  for (let i = first; i < labels.length; i++) {
    if (!LABEL.test(labels[i] as string)) return undefined;
  }
  if (/^\d+$/.test(labels[labels.length - 1] as string)) return undefined; // an IPv4 literal
  return name;
}

/**
 * Whether `name` (possibly a `*.` wildcard) falls under one of `patterns`
 * (a users-file `hosts` list): equal to one, or under a `*.` pattern at any
 * depth (`*.team.example.org` allows `a.team.example.org`,
 * `x.a.team.example.org` and `*.a.team.example.org`, not `team.example.org`).
 */
export function nameAllowed(name: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => {
    if (pattern === name) return true;
    if (!pattern.startsWith("*.")) return false;
    return name.endsWith(pattern.slice(1)) && name.length > pattern.length - 1;
  });
}
