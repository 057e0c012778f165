/**
 * The server's web side wired to its sessions: the {@linkcode WebService}
 * (shared `--http`/`--https` listeners, certificates, ACME) with the
 * `admit` and `dial` the edge asks for each request, answered by the
 * {@linkcode WebApp} that holds the request's route (its group's quota,
 * its replicas), and the exposing of a web app: a claim on its names, or
 * one more replica of the app a shared group serves already.
 *
 * @module
 */

import { type HostPort, parseHostPort } from "../util/addr.ts";
import { ConfigError } from "../util/errors.ts";
import { type SourceGuard, sourceOf } from "../util/source_guard.ts";
import { type WebClaim, WebService } from "../http/service.ts";
import type { WebApp as WebAppMessage } from "../protocol/control.ts";
import type { BalancePolicy } from "../protocol/protocol.ts";
import type { WireRefusalCode } from "../util/errors.ts";
import { Secret } from "../util/secret.ts";
import type { Route } from "../http/routes.ts";
import type { WebOptions } from "./api.ts";
import type { MonitoredWeb } from "../dashboard/web_apps.ts";
import { WebApp, type WebAppServices, type WebSession } from "./web_app.ts";
import { isRemoteRoute, type RemoteHosts, type WebMeta } from "./cluster/remote_hosts.ts";
import type { RelayedUser } from "./cluster/relay_auth.ts";
import type { Dialed } from "../http/upstream.ts";
import { normalizeName } from "../http/routes.ts";
import { checkNames } from "../http/names.ts";

/** A session as the web side sees it: a {@linkcode WebSession} with its web apps. */
export interface WebMember extends WebSession {
  /** Its web apps, by app name (a shared app is one object in every replica's map). */
  readonly webApps: ReadonlyMap<string, WebApp>;
}

/** What the web side needs from the server. */
export interface WebContext extends WebAppServices {
  /** The live sessions of `group` (one, or several for a shared group). */
  members(group: string): readonly WebMember[];
  guard: SourceGuard;
  /** The state folder for ACME, if the server has one. */
  stateDir: string | undefined;
  /** In a cluster: the names other nodes hold, routed here. */
  remote(): RemoteHosts | undefined;
}

/** Starts the web side from the server's `web` options. */
export async function startWeb(options: WebOptions, ctx: WebContext): Promise<WebService> {
  const addr = (key: "http" | "https"): HostPort | undefined => {
    const text = options[key];
    if (text === undefined) return undefined;
    const parsed = parseHostPort(text);
    if (typeof parsed === "string") throw new ConfigError(`${key}.bind: ${parsed}`);
    return parsed;
  };
  const http = addr("http");
  const https = addr("https");
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new ConfigError("https.cert and https.key go together (--https-cert, --https-key)");
  }
  if (options.acme && ctx.stateDir === undefined) {
    throw new ConfigError("acme: needs a state folder for the certificates (--state-dir)");
  }
  return await WebService.start({
    ...(http ? { http } : {}),
    ...(https ? { https } : {}),
    ...(options.domain !== undefined ? { domain: options.domain } : {}),
    ...(options.cert !== undefined && options.key !== undefined
      ? { defaultCert: { cert: options.cert, key: options.key } }
      : {}),
    ...(options.certs ? { certs: options.certs } : {}),
    ...(options.acme && ctx.stateDir !== undefined
      ? {
        acme: {
          stateDir: ctx.stateDir,
          ...(options.acme.email !== undefined ? { email: options.acme.email } : {}),
          ...(options.acme.directory !== undefined ? { directory: options.acme.directory } : {}),
          ...(options.acme.ca !== undefined ? { caFile: options.acme.ca } : {}),
        },
      }
      : {}),
    dial: (route, target, user) => {
      const remote = isRemoteRoute(route) ? ctx.remote() : undefined;
      if (remote) return remote.dial(route, user);
      const app = webAppOf(route, ctx);
      return app ? app.dial(target, user) : Promise.reject(new Error(`${route.id} is offline`));
    },
    admit: (route) =>
      (isRemoteRoute(route) ? ctx.remote()?.admit(route) : webAppOf(route, ctx)?.admit()) ??
        { ok: false, status: 502, why: `${route.id} is offline` },
    guard: {
      lockedFor: (address) => ctx.guard.lockedFor(sourceOf(address)),
      failed: (address) => ctx.guard.failed(sourceOf(address)),
    },
  });
}

/**
 * The web side as the monitor reads it: the service's web apps, each one
 * of a shared group with its replicas (client, health, requests).
 */
export function monitoredWeb(
  service: WebService,
  members: (group: string) => readonly (WebMember & { readonly shared: boolean })[],
): MonitoredWeb {
  return {
    hosts: service.hosts,
    apps: () =>
      service.apps().map((view) => {
        const holder = members(view.group).find((m) => m.shared && m.webApps.has(view.app));
        const app = holder?.webApps.get(view.app);
        return app?.route.id === view.id ? { ...view, replicas: app.replicas() } : view;
      }),
  };
}

/** What exposing a web app came to. */
export type WebExposeAnswer =
  | { ok: true; app: WebApp }
  | { ok: false; code: WireRefusalCode; message: string };

/**
 * Exposes web app `msg.app` of `self`'s group as its `expose` asks: it
 * joins the replicas of the app of that name another member of a shared
 * group serves (they must agree on type, names and paths:
 * `replica_mismatch`), or claims its names (`hosts`: the group's
 * users-file patterns, if it has an entry).
 */
export function exposeWebApp(
  service: WebService | undefined,
  services: WebAppServices,
  self: WebMember & { readonly shared: boolean },
  members: readonly WebMember[],
  msg: { app: string; web: WebAppMessage; balance?: BalancePolicy | undefined },
  hosts: readonly string[] | undefined,
): WebExposeAnswer {
  if (!service) {
    return {
      ok: false,
      code: "bad_request",
      message:
        `this server serves no ${msg.web.type} apps: it was started without --http or --https`,
    };
  }
  const claim = webClaim(self, msg);
  const shape = { type: msg.web.type, names: service.names(claim), paths: msg.web.paths };
  const sibling = siblingWebApp(self, members, msg.app);
  if (sibling) {
    const mismatch = sibling.mismatch(shape);
    if (mismatch !== undefined) return { ok: false, code: "replica_mismatch", message: mismatch };
    sibling.addReplica(self);
    return { ok: true, app: sibling };
  }
  const claimed = service.claim(claim, hosts);
  if (!claimed.ok) return claimed;
  return {
    ok: true,
    app: new WebApp(services, {
      route: claimed.route,
      app: msg.app,
      urls: claimed.urls,
      shape: { ...shape, names: claimed.names },
      first: self,
      balance: msg.balance,
    }),
  };
}

/** The web app that holds `route` now, if a live session serves it. */
function webAppOf(route: Route, ctx: Pick<WebContext, "members">): WebApp | undefined {
  const name = route.id.slice(route.group.length + 1);
  for (const member of ctx.members(route.group)) {
    const app = member.ended ? undefined : member.webApps.get(name);
    if (app?.route === route) return app;
  }
  return undefined;
}

/** The claim a web app's `expose` asks for. */
function webClaim(self: WebMember, msg: { app: string; web: WebAppMessage }): WebClaim {
  const web = msg.web;
  return {
    id: `${self.group}/${msg.app}`,
    group: self.group,
    app: msg.app,
    web: {
      type: web.type,
      hostnames: web.hostnames,
      paths: web.paths,
      httpsOnly: web.httpsOnly ?? false,
      ...(web.subdomain !== undefined ? { subdomain: web.subdomain } : {}),
      ...(web.hostHeader !== undefined ? { hostHeader: web.hostHeader } : {}),
      ...(web.auth
        ? { auth: { user: web.auth.user, password: new Secret(web.auth.password) } }
        : {}),
    },
  };
}

/** The web app of that name another live member of `self`'s shared group serves, if any. */
function siblingWebApp(
  self: WebMember & { readonly shared: boolean },
  members: readonly WebMember[],
  app: string,
): WebApp | undefined {
  return self.shared
    ? members.find((m) => m !== self && !m.ended && m.webApps.has(app))?.webApps.get(app)
    : undefined;
}

/** What a web app claims cluster-wide: its names, its meta, and its credentials to tag. */
export interface ClusterWebNames {
  names: string[];
  meta: WebMeta;
  /** Basic auth as `user:password`: only a tag of it goes to the store. */
  credentials?: string;
}

/**
 * In a cluster, the names a web app's `expose` claims cluster-wide and what
 * the other nodes learn of it; undefined when it joins a local sibling's
 * replicas (the sibling holds the names), names a host its users-file
 * entry does not allow (refused locally), or the server has no web side.
 */
export function clusterNames(
  service: WebService | undefined,
  self: WebMember & { readonly shared: boolean },
  members: readonly WebMember[],
  msg: { app: string; web: WebAppMessage },
  allowed: readonly string[] | undefined,
): ClusterWebNames | undefined {
  if (!service || siblingWebApp(self, members, msg.app)) return undefined;
  const claim = webClaim(self, msg);
  // Names the group may not have are refused locally, never claimed for a moment.
  if (checkNames(service.names(claim), allowed) !== undefined) return undefined;
  const meta: WebMeta = {
    type: msg.web.type,
    group: self.group,
    app: msg.app,
    ...(msg.web.hostHeader !== undefined ? { hostHeader: msg.web.hostHeader } : {}),
    ...(msg.web.httpsOnly ? { httpsOnly: true } : {}),
  };
  const auth = msg.web.auth;
  return {
    names: service.names(claim),
    meta,
    ...(auth ? { credentials: `${auth.user}:${auth.password}` } : {}),
  };
}

/** For a user another node relayed: a stream to the local app of `host`, admitted; or why not. */
export async function relayedWebStream(
  service: WebService | undefined,
  ctx: Pick<WebContext, "members">,
  host: string,
  user: RelayedUser,
): Promise<{ dialed: Dialed; done(): void } | string> {
  const name = normalizeName(host, true);
  if (name === undefined) return `${host} is not a host name`;
  const route = service?.routes.routes().find((r) => !isRemoteRoute(r) && r.hosts.includes(name));
  const app = route === undefined ? undefined : webAppOf(route, ctx);
  if (route === undefined || app === undefined) return `no live app for ${name} here`;
  const admitted = app.admit();
  if (!admitted.ok) return admitted.why;
  const addrs = route.kind === "tls" ? { source: user.from, destination: user.to } : undefined;
  try {
    return { dialed: await app.dial(admitted.ticket.target, addrs), done: admitted.ticket.done };
  } catch (err) {
    admitted.ticket.done();
    return err instanceof Error ? err.message : String(err);
  }
}
