/**
 * Names as claims: which app answers for which host name (and path prefix).
 *
 * One table per server holds every name an `http` or `tls` app claimed. A
 * lookup takes the request's host and path: the exact name first, then the
 * nearest `*.` wildcard (for `a.b.example.org`: `*.b.example.org`, then
 * `*.example.org`), and within a name the longest `paths` prefix that
 * matches. A name is held by one app at a time; several apps may share it
 * by paths only when they are in one group. When an app goes offline its
 * names stay in the table, marked offline (requests get 502), until the app
 * comes back or another app claims them.
 *
 * @module
 */

import type { Secret } from "../util/secret.ts";

export { nameAllowed, normalizeName } from "../util/hostname.ts";

/** What a name leads to: an HTTP app (terminated at the edge) or a TLS app (passed through). */
export type RouteKind = "http" | "tls";

/**
 * Basic auth checked at the edge: the credentials, or a check of an
 * `Authorization` header made without them (an app of another node).
 */
export type RouteAuth = { user: string; password: Secret } | AuthCheck;

/** Checks an `Authorization` header's basic-auth credentials. */
export interface AuthCheck {
  check(header: string | null | undefined): Promise<boolean>;
}

/** One app's claim on names, as the edge needs it. */
export interface Route {
  /** Unique holder id, e.g. `GROUP/APP`. */
  readonly id: string;
  /** The holder's group: apps sharing a name by paths must have the same one. */
  readonly group: string;
  readonly kind: RouteKind;
  /** Normalised names (see {@linkcode normalizeName}); `*.NAME` is a wildcard. */
  readonly hosts: readonly string[];
  /** Path prefixes, each starting with `/`; empty means `/` (everything). */
  readonly paths: readonly string[];
  /** Basic auth at the edge (http only). */
  readonly auth?: RouteAuth;
  /** `Host` sent to the app instead of the user's (http only). */
  readonly hostHeader?: string;
  /** Plain-HTTP requests get a 308 to the https listener (http only). */
  readonly httpsOnly?: boolean;
}

/** A lookup's answer: the route and whether its app is live right now. */
export interface RouteMatch {
  route: Route;
  live: boolean;
}

/** Why a claim failed. */
export type ClaimResult =
  | { ok: true }
  | { ok: false; code: "host_taken"; host: string; holder: string };

interface Entry {
  prefix: string;
  route: Route;
  live: boolean;
}

/** Whether `path` (the request target's path) lies under `prefix`. */
export function pathUnder(path: string, prefix: string): boolean {
  if (prefix === "/" || path === prefix) return true;
  if (!path.startsWith(prefix)) return false;
  if (prefix.endsWith("/")) return true;
  const next = path.charCodeAt(prefix.length);
  return next === 0x2f /* / */ || next === 0x3f /* ? */ || next === 0x23 /* # */;
}

/** Every name and prefix claimed, with lookups by host and path. */
export class RouteTable {
  #byName = new Map<string, Entry[]>();
  #byId = new Map<string, Route>();

  /**
   * Claims every name and prefix of `route`, all or none. A claim by the
   * same id replaces that id's earlier one (an app coming back). Another
   * holder's offline names are taken over; live ones are `host_taken`
   * unless both are in one group and use different paths.
   */
  claim(route: Route): ClaimResult {
    const prefixes = route.paths.length === 0 ? ["/"] : route.paths;
    for (const host of route.hosts) {
      for (const entry of this.#byName.get(host) ?? []) {
        const other = entry.route;
        if (other.id === route.id || !entry.live) continue;
        const sharable = other.group === route.group && route.kind === "http" &&
          other.kind === "http" && !prefixes.includes(entry.prefix);
        if (!sharable) return { ok: false, code: "host_taken", host, holder: other.id };
      }
    }
    this.release(route.id);
    for (const host of route.hosts) {
      // Live entries left after the check share the name by paths; offline
      // holders lose it to this claim.
      for (const stale of (this.#byName.get(host) ?? []).filter((e) => !e.live)) {
        this.#forget(stale.route.id, host);
      }
      const kept = [...(this.#byName.get(host) ?? [])];
      for (const prefix of prefixes) kept.push({ prefix, route, live: true });
      kept.sort((a, b) => b.prefix.length - a.prefix.length);
      this.#byName.set(host, kept);
    }
    this.#byId.set(route.id, route);
    return { ok: true };
  }

  /** Frees every name of `id` (the app went for good). */
  release(id: string): void {
    const route = this.#byId.get(id);
    if (!route) return;
    for (const host of route.hosts) this.#forget(id, host);
    this.#byId.delete(id);
  }

  /**
   * Marks the names of `id` offline (or live again): lookups still find
   * them, as offline, and any other app may claim them.
   */
  setLive(id: string, live: boolean): void {
    const route = this.#byId.get(id);
    if (!route) return;
    for (const host of route.hosts) {
      for (const entry of this.#byName.get(host) ?? []) {
        if (entry.route.id === id) entry.live = live;
      }
    }
  }

  /** The route `id` as claimed, if it holds names. */
  get(id: string): Route | undefined {
    return this.#byId.get(id);
  }

  /** Every route that holds names. */
  routes(): Route[] {
    return [...this.#byId.values()];
  }

  /**
   * The route for a request: `host` as normalised, `path` the request
   * target's path. Exact name first, then the nearest wildcard; within a
   * name the longest matching prefix.
   */
  match(host: string, path: string): RouteMatch | undefined {
    for (const candidate of namesFor(host)) {
      const entries = this.#byName.get(candidate);
      if (entries === undefined) continue;
      const entry = entries.find((e) => pathUnder(path, e.prefix));
      if (entry) return { route: entry.route, live: entry.live };
    }
    return undefined;
  }

  #forget(id: string, host: string): void {
    const left = (this.#byName.get(host) ?? []).filter((e) => e.route.id !== id);
    if (left.length === 0) this.#byName.delete(host);
    else this.#byName.set(host, left);
    const route = this.#byId.get(id);
    if (route && !route.hosts.some((h) => this.#byName.get(h)?.some((e) => e.route.id === id))) {
      this.#byId.delete(id);
    }
  }
}

/** `a.b.example.org`, then `*.b.example.org`, `*.example.org` (never `*.org`). */
function* namesFor(host: string): Generator<string> {
  yield host;
  let rest = host;
  while (true) {
    const dot = rest.indexOf(".");
    if (dot < 0) return;
    rest = rest.slice(dot + 1);
    if (!rest.includes(".")) return;
    yield `*.${rest}`;
  }
}
