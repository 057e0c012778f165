/**
 * The host names this node's web edge serves for web apps held on other
 * nodes. A web app's names are claims of kind `host`; each claim's `meta`
 * says what the other edges need of the app (its type, group and name, its
 * `host_header` and `https_only`). For every name another node holds, this
 * node adds a route (`cluster:NAME`) to its own route table; a request for
 * it (or a passed-through TLS connection) goes to the holder as a relay
 * stream whose header names the host: the edge speaks HTTP/1.1 over it as
 * over a stream to the app, and the holder joins it to a stream of its
 * local web app. Who holds a name is a lookup in the view: no store
 * operation per request.
 *
 * An app with basic auth: its claim carries a tag of its credentials (an
 * HMAC under `cluster.secret`, see `relay_auth.ts`), never the credentials;
 * the other edges check a user's `Authorization` against the tag.
 *
 * @module
 */

import { z } from "zod";
import type { Logger } from "@logtape/logtape";
import type { Claim, NodeRecord } from "../../cluster/store.ts";
import type { AuthCheck, Route } from "../../http/routes.ts";
import type { WebService } from "../../http/service.ts";
import type { Admission, Dialed } from "../../http/upstream.ts";
import type { ProxiedAddresses } from "../../tunnel/proxy_protocol.ts";
import { type BufferPool, join } from "../../tunnel/join.ts";
import type { MuxStream } from "../../transport/mux/mod.ts";
import type { RelayDialer } from "./relay.ts";
import type { RelayedUser, RelayKeys } from "./relay_auth.ts";

/** What a host claim tells the other nodes of its web app. */
export interface WebMeta {
  type: "http" | "tls";
  group: string;
  app: string;
  hostHeader?: string | undefined;
  httpsOnly?: boolean | undefined;
  /** The app's basic-auth credentials as a tag (hex HMAC-SHA256 under the secret). */
  auth?: string | undefined;
}

const metaSchema = z.strictObject({
  type: z.enum(["http", "tls"]),
  group: z.string().min(1).max(255),
  app: z.string().min(1).max(255),
  hostHeader: z.string().max(255).optional(),
  httpsOnly: z.boolean().optional(),
  auth: z.string().regex(/^[0-9a-f]{64}$/).optional(),
});

/** The `meta` of a web app's host claims. */
export function webMeta(meta: WebMeta): string {
  return JSON.stringify(meta);
}

/** A host claim's meta, or undefined when it is not one. */
export function parseWebMeta(text: string | undefined): WebMeta | undefined {
  if (text === undefined) return undefined;
  try {
    const parsed = metaSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The id prefix of the routes this node holds for names of other nodes. */
const PREFIX = "cluster:";

/** Whether `route` is one this node holds for another node. */
export function isRemoteRoute(route: Route): boolean {
  return route.id.startsWith(PREFIX);
}

/** What the server gives for web apps in a cluster. */
export interface WebHost {
  /** The web side, when the server has one. */
  web(): WebService | undefined;
  /** A stream to the local web app of `host`, admitted, for a relayed user; or why not. */
  webStream(host: string, user: RelayedUser): Promise<{ dialed: Dialed; done(): void } | string>;
}

/** What the remote hosts need around them. */
export interface RemoteHostsDeps {
  self: string;
  log: Logger;
  buffers: BufferPool;
  dialer: RelayDialer;
  keys: RelayKeys;
  host: WebHost;
  /** Who holds host name `host` now. */
  holder(host: string): Claim | undefined;
  /** A live node by name. */
  node(name: string): NodeRecord | undefined;
}

const NOWHERE = { hostname: "0.0.0.0", port: 0 };

/** The routes for names other nodes hold. */
export class RemoteHosts {
  #d: RemoteHostsDeps;
  #routes = new Map<string, { route: Route; meta: WebMeta; node: string }>();

  constructor(deps: RemoteHostsDeps) {
    this.#d = deps;
  }

  /** The names routed here for other nodes. */
  hosts(): string[] {
    return [...this.#routes.keys()];
  }

  /** Another node's claim on a host name: routes it here (unless a local app holds it). */
  held(claim: Claim): void {
    const web = this.#d.host.web();
    if (web === undefined || claim.node === this.#d.self) return;
    const meta = parseWebMeta(claim.meta);
    if (meta === undefined) {
      return this.#d.log.debug(`cluster: host ${claim.key} of node ${claim.node}: no app meta`);
    }
    const host = claim.key;
    const known = this.#routes.get(host);
    if (known && known.node === claim.node && JSON.stringify(known.meta) === claim.meta) return;
    const route: Route = {
      id: `${PREFIX}${host}`,
      group: meta.group,
      kind: meta.type,
      hosts: [host],
      paths: [],
      httpsOnly: meta.httpsOnly ?? false,
      ...(meta.hostHeader !== undefined ? { hostHeader: meta.hostHeader } : {}),
      ...(meta.auth !== undefined ? { auth: tagCheck(this.#d.keys, meta.auth) } : {}),
    };
    const claimed = web.routes.claim(route);
    if (!claimed.ok) {
      return this.#d.log.debug(
        `cluster: host ${host} of node ${claim.node} is held here by ${claimed.holder}`,
      );
    }
    this.#routes.set(host, { route, meta, node: claim.node });
    web.edge.dropUpstream(route.id);
  }

  /** Stops routing `host` here for another node (it is free, or held here now). */
  drop(host: string): void {
    const known = this.#routes.get(host);
    if (known === undefined) return;
    this.#routes.delete(host);
    const web = this.#d.host.web();
    if (web?.routes.get(known.route.id) === known.route) web.routes.release(known.route.id);
    web?.edge.dropUpstream(known.route.id);
  }

  /** Lets a request for another node's name in (its holder admits it again). */
  admit(route: Route): Admission {
    const known = this.#routes.get(route.hosts[0] ?? "");
    if (known === undefined) return { ok: false, status: 502, why: `${route.id} is offline` };
    return { ok: true, ticket: { target: known.node, done: () => {} } };
  }

  /** A relay stream to the node that holds `route`'s name now. */
  async dial(route: Route, user?: ProxiedAddresses): Promise<Dialed> {
    const host = route.hosts[0] ?? "";
    const claim = this.#d.holder(host);
    const node = claim === undefined ? undefined : this.#d.node(claim.node);
    if (claim === undefined || node === undefined || claim.node === this.#d.self) {
      throw new Error(`no live node holds ${host}`);
    }
    return await this.#d.dialer.open(node.name, node.advertise, {
      port: user?.destination.port ?? 0,
      host,
      from: user?.source ?? NOWHERE,
      to: user?.destination ?? NOWHERE,
    });
  }

  /** Serves a user another node's edge relayed here for a web app of this node. */
  async serve(stream: MuxStream, user: RelayedUser, peer: string): Promise<void> {
    const got = await this.#d.host.webStream(user.host!, user);
    if (typeof got === "string") {
      this.#d.log.debug(`cluster: node ${peer} relayed a request for ${user.host}: ${got}`);
      return stream.reset(got);
    }
    try {
      const result = await join(stream, got.dialed, { pool: this.#d.buffers });
      if (result.error !== undefined) stream.reset();
    } finally {
      got.done();
    }
  }
}

/** A check of basic-auth credentials against their tag. */
function tagCheck(keys: RelayKeys, tag: string): AuthCheck {
  return {
    async check(header) {
      const m = header == null ? null : /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
      if (!m) return false;
      let given: string;
      try {
        given = new TextDecoder().decode(Uint8Array.from(atob(m[1]!), (c) => c.charCodeAt(0)));
      } catch {
        return false;
      }
      return await keys.checkAuthTag(given, tag);
    },
  };
}
