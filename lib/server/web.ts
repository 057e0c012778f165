/**
 * The server's web side wired to its sessions: the {@linkcode WebService}
 * (shared `--http`/`--https` listeners, certificates, ACME) with a `dial`
 * that opens a stream to a web app through its group's live session, the
 * same four steps as for a TCP user (take a work stream, `start` it, wait
 * for `started`, hand it over with the bytes that came with the answer).
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { type HostPort, parseHostPort } from "../util/addr.ts";
import { ConfigError } from "../util/errors.ts";
import type { Duplex } from "../transport/transport.ts";
import { type SourceGuard, sourceOf } from "../util/source_guard.ts";
import { WebService } from "../http/service.ts";
import type { WebApp } from "../protocol/control.ts";
import type { WireRefusalCode } from "../util/errors.ts";
import { Secret } from "../util/secret.ts";
import type { Route } from "../http/routes.ts";
import { UpstreamBusyError } from "../http/upstream.ts";
import type { WebOptions } from "./api.ts";
import type { WorkSource } from "./work_conn.ts";

/** What the web side needs of a group's session (kept apart: the session imports this module). */
export interface WebSession {
  readonly ended: boolean;
  /** Its web apps, by app name. */
  readonly webApps: ReadonlyMap<string, unknown>;
  readonly work: WorkSource;
  groupFull(): string | undefined;
  nextWorkId(): number;
}

/** What the web side needs from the server. */
export interface WebContext {
  /** The live session holding `group`, if any. */
  session(group: string): WebSession | undefined;
  guard: SourceGuard;
  /** The state folder for ACME, if the server has one. */
  stateDir: string | undefined;
  log: Logger;
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
    dial: (route) => dialApp(route, ctx),
    guard: {
      lockedFor: (address) => ctx.guard.lockedFor(sourceOf(address)),
      failed: (address) => ctx.guard.failed(sourceOf(address)),
    },
  });
}

/** What claiming a web app's names came to. */
export type WebClaimAnswer =
  | { ok: true; route: Route; urls: string[] }
  | { ok: false; code: WireRefusalCode; message: string };

/**
 * Claims the names of web app `app` of `group` as its `expose` asks
 * (`hosts`: the group's users-file patterns, if it has an entry).
 */
export function claimWebApp(
  service: WebService | undefined,
  group: string,
  app: string,
  web: WebApp,
  hosts: readonly string[] | undefined,
): WebClaimAnswer {
  if (!service) {
    return {
      ok: false,
      code: "bad_request",
      message: `this server serves no ${web.type} apps: it was started without --http or --https`,
    };
  }
  const route = `${group}/${app}`;
  const claimed = service.claim({
    id: route,
    group,
    app,
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
  }, hosts);
  return claimed.ok ? { ok: true, route: claimed.route, urls: claimed.urls } : claimed;
}

/** A stream to the app of `route`, through its group's session. */
async function dialApp(route: Route, ctx: WebContext): Promise<Duplex> {
  const session = ctx.session(route.group);
  const app = route.id.slice(route.group.length + 1);
  if (!session || session.ended || !session.webApps.has(app)) {
    throw new Error(`${route.id} is offline`);
  }
  if (session.groupFull() !== undefined) throw new UpstreamBusyError(session.groupFull());
  const work = await session.work.take();
  if (!work) throw new Error(`no work connection from ${route.group} in time`);
  const id = session.nextWorkId();
  await work.start({
    type: "start",
    id,
    app,
    user: "http edge",
    source: { hostname: "0.0.0.0", port: 0 },
    destination: { hostname: "0.0.0.0", port: 0 },
  });
  const first = await work.started();
  return first.length === 0 ? work.stream : new Prefixed(work.stream, first);
}

/** A stream whose first reads return bytes already read from it. */
class Prefixed implements Duplex {
  #inner: Duplex;
  #first: Uint8Array;

  constructor(inner: Duplex, first: Uint8Array) {
    this.#inner = inner;
    this.#first = first;
  }

  read(p: Uint8Array): Promise<number | null> {
    if (this.#first.length === 0) return this.#inner.read(p);
    const n = Math.min(p.length, this.#first.length);
    p.set(this.#first.subarray(0, n));
    this.#first = this.#first.subarray(n);
    return Promise.resolve(n);
  }

  write(p: Uint8Array): Promise<number> {
    return this.#inner.write(p);
  }

  closeWrite(): Promise<void> {
    return this.#inner.closeWrite();
  }

  close(): void {
    this.#inner.close();
  }
}
