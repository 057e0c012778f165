/**
 * The server's web side in one object, so that wiring it into the server
 * is a handful of calls: it loads the certificates (`https.cert`,
 * `https.key`, `https.certs`), starts ACME when asked (`acme.*`), binds the
 * `--http` and `--https` listeners, and turns an app's registration into
 * claims on names (`host_not_allowed` by the users file's `hosts`,
 * `host_taken` by the route table), with the URLs of its `ready` line.
 *
 * It counts requests per host ({@linkcode HostMetrics}) and lists the web
 * apps with their URLs ({@linkcode WebService.apps}), for the dashboard.
 *
 * The server gives it `dial(route)`, which opens a stream to the app of a
 * route through the tunnel (a work connection, later a multiplexed stream).
 *
 * @module
 */

import { formatHostPort, type HostPort } from "../util/addr.ts";
import { ConfigError } from "../util/errors.ts";
import type { Secret } from "../util/secret.ts";
import type { AcmeManager } from "./acme/manager.ts";
import { CertStore } from "./certs.ts";
import { HttpEdge } from "./edge.ts";
import { HostMetrics } from "./host_metrics.ts";
import { appNames, checkNames, type PublicWebPorts, readyUrls } from "./names.ts";
import type { AuthGuard, EdgeRequestEvent } from "./proxy.ts";
import { type Route, RouteTable } from "./routes.ts";
import type { Admit, Dial } from "./upstream.ts";
import type { EdgeLimits } from "./edge.ts";

/** A certificate and key as files. */
export interface CertFiles {
  cert: string;
  key: string;
}

/** Options for {@linkcode WebService.start}. */
export interface WebServiceOptions {
  http?: HostPort;
  https?: HostPort;
  /** `--domain`: apps are named `SUBDOMAIN.DOMAIN`. */
  domain?: string;
  /** `https.cert`/`https.key`: the default certificate. */
  defaultCert?: CertFiles;
  /** `https.certs`: more, chosen by SNI. */
  certs?: CertFiles[];
  /** `acme.*`, with the server's state folder. */
  acme?: { email?: string; directory?: string; caFile?: string; stateDir: string };
  dial: Dial;
  /** Lets each request in to its app (the group's quota, a replica), or not. */
  admit?: Admit;
  guard?: AuthGuard;
  observe?: (event: EdgeRequestEvent) => void;
  limits?: Partial<EdgeLimits>;
}

/** An app's web settings (the group file's keys, as `webAppConfig` in lib/config/http_keys.ts gives them). */
export interface WebAppSettings {
  type: "http" | "tls";
  subdomain?: string;
  hostnames: string[];
  paths: string[];
  auth?: { user: string; password: Secret };
  hostHeader?: string;
  httpsOnly: boolean;
}

/** An app asking for names. */
export interface WebClaim {
  /** `GROUP/APP`. */
  id: string;
  group: string;
  app: string;
  web: WebAppSettings;
}

/** What a claim came to. */
export type WebClaimResult =
  | { ok: true; names: string[]; urls: string[]; route: Route }
  | { ok: false; code: "host_taken" | "host_not_allowed" | "bad_request"; message: string };

/** One web app holding names, as the dashboard lists it. */
export interface WebAppView {
  /** `GROUP/APP`. */
  id: string;
  group: string;
  app: string;
  type: "http" | "tls";
  names: string[];
  urls: string[];
  /** False while its group is offline (its names held, users get 502). */
  live: boolean;
}

/** The running web side of a server. */
export class WebService {
  readonly routes: RouteTable;
  readonly edge: HttpEdge;
  readonly acme: AcmeManager | undefined;
  #domain: string | undefined;
  /** Requests, status classes, bytes and open requests per host name. */
  readonly hosts: HostMetrics;
  #names = new Map<string, string[]>();
  #apps = new Map<string, WebAppView>();

  private constructor(
    routes: RouteTable,
    edge: HttpEdge,
    acme: AcmeManager | undefined,
    domain: string | undefined,
    hosts: HostMetrics,
  ) {
    this.hosts = hosts;
    this.routes = routes;
    this.edge = edge;
    this.acme = acme;
    this.#domain = domain;
  }

  /**
   * Loads certificates and binds the listeners. A certificate file that
   * cannot be read or used is a `ConfigError` naming it; an address that
   * cannot be bound a `ListenError`.
   */
  static async start(options: WebServiceOptions): Promise<WebService> {
    const certs = new CertStore();
    if (options.defaultCert) await addFiles(certs, options.defaultCert, "https.cert", true);
    for (const [i, files] of (options.certs ?? []).entries()) {
      await addFiles(certs, files, `https.certs[${i}]`, false);
    }
    if (options.https && certs.empty && !options.acme) {
      throw new ConfigError(
        "https: no certificate: give https.cert and https.key (--https-cert, --https-key), " +
          "https.certs, or acme for automatic ones",
      );
    }
    let acme: AcmeManager | undefined;
    if (options.acme) {
      if (!options.http) {
        throw new ConfigError(
          "acme: needs --http (http.bind): HTTP-01 challenges are answered there",
        );
      }
      const ca = options.acme.caFile === undefined
        ? undefined
        : await readFile(options.acme.caFile, "acme.ca");
      // Loaded only when asked for: its dependencies need more than the server otherwise does.
      const { AcmeManager } = await import("./acme/manager.ts");
      acme = new AcmeManager({
        stateDir: options.acme.stateDir,
        certs,
        ...(options.acme.email !== undefined ? { email: options.acme.email } : {}),
        ...(options.acme.directory !== undefined ? { directory: options.acme.directory } : {}),
        ...(ca !== undefined ? { ca } : {}),
      });
      await acme.start();
    }
    const routes = new RouteTable();
    const manager = acme;
    const hosts = new HostMetrics();
    const observe = options.observe;
    const edge = await HttpEdge.start({
      routes,
      dial: options.dial,
      ...(options.admit ? { admit: options.admit } : {}),
      certs,
      ...(options.http ? { http: options.http } : {}),
      ...(options.https ? { https: options.https } : {}),
      ...(options.guard ? { guard: options.guard } : {}),
      observe: (event) => {
        hosts.observe(event);
        observe?.(event);
      },
      opened: (event) => hosts.opened(event),
      ...(options.limits ? { limits: options.limits } : {}),
      ...(manager ? { acmeChallenge: (token: string) => manager.challenge(token) } : {}),
    }).catch((err) => {
      manager?.close();
      throw err;
    });
    return new WebService(routes, edge, acme, options.domain, hosts);
  }

  /** The public ports, for `ready` URLs. */
  get ports(): PublicWebPorts {
    const out: PublicWebPorts = {};
    if (this.edge.httpAddr) out.http = this.edge.httpAddr.port;
    if (this.edge.httpsAddr) out.https = this.edge.httpsAddr.port;
    return out;
  }

  /** The lines the server prints once bound: `http http://HOST:PORT/`, `https https://HOST:PORT/`. */
  lines(): string[] {
    const out: string[] = [];
    if (this.edge.httpAddr) out.push(`http http://${formatHostPort(this.edge.httpAddr)}/`);
    if (this.edge.httpsAddr) out.push(`https https://${formatHostPort(this.edge.httpsAddr)}/`);
    return out;
  }

  /** The names `claim` asks for, normalised (what {@linkcode claim} would claim). */
  names(claim: WebClaim): string[] {
    return appNames({
      group: claim.group,
      app: claim.app,
      hostnames: claim.web.hostnames,
      ...(claim.web.subdomain !== undefined ? { subdomain: claim.web.subdomain } : {}),
      ...(this.#domain !== undefined ? { domain: this.#domain } : {}),
    });
  }

  /**
   * Claims the names of an app, all or none. `allowedHosts` are the
   * group's users-file `hosts` patterns (undefined: no restriction). A
   * claim by the same id replaces its earlier one (the app came back).
   * An `https_only` app on a server without `--https` is refused
   * (`bad_request`): there is no listener to redirect it to.
   */
  claim(claim: WebClaim, allowedHosts?: readonly string[]): WebClaimResult {
    if (claim.web.type === "http" && claim.web.httpsOnly && !this.edge.httpsAddr) {
      // Serving it on plain HTTP would quietly drop what the app asked for.
      return {
        ok: false,
        code: "bad_request",
        message: "https_only: this server has no --https listener to redirect to " +
          "(drop https_only, or start the server with --https)",
      };
    }
    const names = this.names(claim);
    const refusal = checkNames(names, allowedHosts);
    if (refusal) return { ok: false, code: refusal.code, message: refusal.message };
    const route: Route = {
      id: claim.id,
      group: claim.group,
      kind: claim.web.type,
      hosts: names,
      paths: claim.web.paths,
      httpsOnly: claim.web.httpsOnly,
      ...(claim.web.auth ? { auth: claim.web.auth } : {}),
      ...(claim.web.hostHeader !== undefined ? { hostHeader: claim.web.hostHeader } : {}),
    };
    const result = this.routes.claim(route);
    if (!result.ok) {
      return {
        ok: false,
        code: "host_taken",
        message: `"${result.host}" is held by another app`,
      };
    }
    const before = this.#names.get(claim.id) ?? [];
    const dropped = before.filter((n) => !names.includes(n));
    this.acme?.unwant(dropped);
    for (const name of dropped) this.hosts.forget(name);
    this.#names.set(claim.id, names);
    this.edge.dropUpstream(claim.id);
    this.acme?.want(names);
    const urls = readyUrls(claim.web.type, names, this.ports);
    this.#apps.set(claim.id, {
      id: claim.id,
      group: claim.group,
      app: claim.app,
      type: claim.web.type,
      names,
      urls,
      live: true,
    });
    return { ok: true, names, urls, route };
  }

  /**
   * Marks an app's names offline (its group went; users get 502 until it
   * comes back or another app claims them), or live again. With `holder`,
   * only while that claim (not a newer one by the same id) holds them.
   */
  setLive(id: string, live: boolean, holder?: Route): void {
    if (holder !== undefined && this.routes.get(id) !== holder) return; // claimed again since
    this.routes.setLive(id, live);
    const view = this.#apps.get(id);
    if (view) view.live = live;
    if (!live) this.edge.dropUpstream(id);
  }

  /** Every web app holding names, live or not, by id. */
  apps(): WebAppView[] {
    return [...this.#apps.values()].map((a) => ({ ...a, names: [...a.names], urls: [...a.urls] }));
  }

  /**
   * Frees an app's names for good. With `holder`, only if that claim still
   * holds them (a newer claim by the same id is left alone).
   */
  release(id: string, holder?: Route): void {
    if (holder !== undefined && this.routes.get(id) !== holder) return;
    const names = this.#names.get(id) ?? [];
    this.acme?.unwant(names);
    for (const name of names) this.hosts.forget(name);
    this.#names.delete(id);
    this.#apps.delete(id);
    this.routes.release(id);
    this.edge.dropUpstream(id);
  }

  /** Stops ACME and the listeners. */
  async close(): Promise<void> {
    this.acme?.close();
    await this.edge.close();
  }
}

async function readFile(path: string, key: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    throw new ConfigError(
      `${key}: cannot read "${path}": ${err instanceof Error ? err.message : err}`,
    );
  }
}

async function addFiles(
  certs: CertStore,
  files: CertFiles,
  key: string,
  asDefault: boolean,
): Promise<void> {
  const cert = await readFile(files.cert, key);
  const keyPem = await readFile(files.key, key.replace("cert", "key"));
  try {
    certs.add({ cert, key: keyPem }, asDefault);
  } catch (err) {
    throw new ConfigError(
      `${key}: "${files.cert}" with "${files.key}": ${err instanceof Error ? err.message : err}`,
    );
  }
}
