/**
 * The burrow server as a library: `startServer` checks the options, binds
 * the control listener on its transport (TLS or plain TCP), and hands every
 * accepted connection to the {@linkcode Router}, which runs one
 * `ServerSession` per admitted client. Everything lives in the returned
 * instance, so several servers can run in one process.
 *
 * @module
 */

import type { ServiceInfo } from "../protocol/services.ts";
import { getLogger, type Logger } from "@logtape/logtape";
import { formatHostPort, type HostPort, parseHostPort, parsePortSpec } from "../util/addr.ts";
import { ConfigError, ListenError } from "../util/errors.ts";
import { BufferPool } from "../tunnel/join.ts";
import { acceptLoop, closeQuietly, netReason } from "../transport/net.ts";
import type { Transport, TransportListener } from "../transport/transport.ts";
import { TcpTransport } from "../transport/tcp.ts";
import { TlsTransport } from "../transport/tls_listener.ts";
import { defaultStateDir } from "../util/state_dir.ts";
import { formatFingerprint } from "../transport/certs.ts";
import {
  ephemeralIdentity,
  generatedIdentity,
  loadOwnCertificate,
  type ServerTlsMaterial,
} from "../transport/server_identity.ts";
import { checkDashboardOptions, Dashboard, type DashboardSettings } from "../dashboard/http.ts";
import type { ServerEvent } from "../dashboard/events.ts";
import type { ExpositionFormat } from "../dashboard/metrics.ts";
import { type GroupStatus, ServerMonitor, type ServerStatus } from "../dashboard/monitor.ts";
import { Registry } from "./registry.ts";
import { Secret } from "../util/secret.ts";
import { RareLog } from "../util/rare_log.ts";
import type { ServerSession } from "./session.ts";
import { Credentials, type UserSpec } from "./users.ts";
import { checkLimits, type ServerLimits } from "../config/limits.ts";
import { SourceGuard } from "../util/source_guard.ts";
import { Admission } from "./admission.ts";
import { Handshakes } from "./handshakes.ts";
import { Router } from "./router.ts";
import type { BurrowServer, ServerOptions } from "./api.ts";
import type { WebService } from "../http/service.ts";
import { monitoredWeb, relayedWebStream, startWeb } from "./web.ts";
import type { SessionServices } from "./session.ts";
import { type ClusterHost, ClusterNode } from "./cluster/node.ts";
import type { ClusterInfo } from "./api.ts";

export type { BurrowServer, ServerOptions, ServiceInfo };

/**
 * Starts a server. Rejects with `ConfigError` for bad options and with
 * `ListenError` when the control address or the public host cannot be bound.
 *
 * @example
 * ```ts
 * import { startServer } from "@burrow/burrow";
 * const server = await startServer({ bind: "127.0.0.1:0", token: "s3cret", ports: "20000-20100" });
 * console.log(server.addr.port);
 * await server.close();
 * ```
 */
export async function startServer(options: ServerOptions = {}): Promise<BurrowServer> {
  const server = new Server(options);
  await server.start();
  return server;
}

class Server implements BurrowServer {
  #options: ServerOptions;
  #token: Secret | undefined;
  /** Undefined with `noAuth`. */
  #credentials: Credentials | undefined;
  #limits: ServerLimits;
  #guard: SourceGuard;
  #log: Logger = getLogger(["burrow", "server"]);
  #rare = new RareLog(this.#log);
  #listener!: TransportListener;
  #registry: Registry<ServerSession>;
  #sessions = new Map<string, ServerSession>();
  #handshakes: Handshakes;
  #router: Router;
  #publicHost: string;
  #accepting: Promise<void> = Promise.resolve();
  #monitor = new ServerMonitor();
  #dashboardSettings: DashboardSettings | undefined;
  #dashboard: Dashboard | undefined;
  #web: WebService | undefined;
  #webMembers = { members: (group: string) => this.#registry.group(group)?.members ?? [] };
  #sessionServices!: SessionServices;
  #cluster: ClusterNode | undefined;
  #identity: string | undefined;
  #closing = false;
  #closed: Promise<void>;
  #resolveClosed!: () => void;
  addr!: HostPort;
  fingerprint: string | undefined;

  constructor(options: ServerOptions) {
    this.#options = options;
    if (options.noAuth !== true) {
      if (options.token !== undefined && options.token !== "") {
        this.#token = typeof options.token === "string" ? new Secret(options.token) : options.token;
      }
      if (this.#token === undefined && (options.users ?? []).length === 0) {
        throw new ConfigError("no token given: set token or users, or noAuth to accept any client");
      }
      this.#credentials = new Credentials(options.users ?? [], this.#token);
    } else if (options.users !== undefined && options.users.length > 0) {
      throw new ConfigError("users: cannot be combined with noAuth");
    }
    this.#limits = checkLimits(options.limits ?? {});
    this.#guard = new SourceGuard(this.#limits);
    const ranges = parsePortSpec(options.ports ?? "10000-20000");
    if (typeof ranges === "string") throw new ConfigError(`ports: ${ranges}`);
    this.#registry = new Registry(ranges);
    const timeout = options.heartbeatTimeout ?? 30;
    if (!(timeout > 0)) {
      throw new ConfigError(`heartbeatTimeout: must be more than 0, got ${timeout}`);
    }
    this.#publicHost = options.publicHost ?? "0.0.0.0";
    this.#handshakes = new Handshakes(this.#guard, this.#limits, this.#rare);
    const admission = new Admission({
      guard: this.#guard,
      limits: this.#limits,
      log: this.#log,
      rare: this.#rare,
      hooks: options,
      credentials: () => this.#credentials,
      token: this.#token,
      live: (group) => this.#registry.group(group),
      liveGroups: () => this.#registry.size,
      closing: () => this.#closing,
    });
    this.#router = new Router({
      log: this.#log,
      rare: this.#rare,
      monitor: this.#monitor,
      handshakes: this.#handshakes,
      admission,
      registry: this.#registry,
      sessions: this.#sessions,
      sessionServices: this.#sessionServices = {
        registry: this.#registry,
        publicHost: this.#publicHost,
        heartbeatTimeoutMs: timeout * 1000,
        buffers: new BufferPool(),
        log: this.#log,
        rare: this.#rare,
        hooks: options,
        monitor: this.#monitor,
        limits: this.#limits,
        pending: { count: 0 },
      },
      credentials: () => this.#credentials,
      services: () => this.services(),
      closing: () => this.#closing,
      clusterWaitMs: options.cluster?.registrationWaitMs ?? 8000,
    });
    if (options.dashboard) this.#dashboardSettings = checkDashboardOptions(options.dashboard);
    this.#closed = new Promise((resolve) => this.#resolveClosed = resolve);
  }

  get closed(): Promise<void> {
    return this.#closed;
  }

  async start(): Promise<void> {
    const bind = parseHostPort(this.#options.bind ?? "0.0.0.0:7700");
    if (typeof bind === "string") throw new ConfigError(`bind: ${bind}`);
    const tls = await this.#loadTls();
    const transport: Transport = tls === undefined ? new TcpTransport() : new TlsTransport(tls);
    const cluster = this.#options.cluster &&
      new ClusterNode(this.#options.cluster, this.#clusterHost(transport));
    // The public host is tried once here, so a typo fails the start instead of
    // turning every later expose into a refusal.
    const publicHost = this.#publicHost;
    try {
      Deno.listen({ hostname: publicHost, port: 0, transport: "tcp" }).close();
    } catch (err) {
      throw new ListenError(`cannot listen on public host ${publicHost}: ${netReason(err)}`);
    }
    try {
      this.#listener = await transport.listen(bind);
    } catch (err) {
      if (
        transport.encrypted && !(err instanceof Deno.errors.AddrInUse) &&
        !(err instanceof Deno.errors.PermissionDenied) &&
        !(err instanceof Deno.errors.AddrNotAvailable)
      ) {
        throw new ConfigError(`tls: cannot use the certificate and key: ${netReason(err)}`);
      }
      throw new ListenError(`cannot listen on ${formatHostPort(bind)}: ${netReason(err)}`);
    }
    if (this.#dashboardSettings) {
      try {
        this.#dashboard = new Dashboard(this.#dashboardSettings, this.#monitor, this.#guard);
      } catch (err) {
        closeQuietly(this.#listener);
        throw err;
      }
    }
    if (this.#options.web) {
      try {
        const members = this.#webMembers.members;
        this.#web = await startWeb(this.#options.web, {
          members,
          guard: this.#guard,
          monitor: this.#monitor,
          stateDir: this.#options.stateDir ?? defaultStateDir(),
          log: this.#log,
          remote: () => cluster?.hosts,
        });
        this.#sessionServices.web = this.#web;
        this.#monitor.attachWeb(monitoredWeb(this.#web, members));
      } catch (err) {
        closeQuietly(this.#listener);
        await this.#dashboard?.close();
        throw err;
      }
    }
    if (cluster) {
      await cluster.start().catch(async (err) => {
        closeQuietly(this.#listener);
        await Promise.all([this.#dashboard?.close(), this.#web?.close(), cluster.close()]);
        throw err;
      });
      this.#cluster = this.#sessionServices.cluster = cluster;
      this.#monitor.attachCluster(cluster);
    }
    this.#monitor.start();
    this.addr = this.#listener.addr;
    this.#log.info(`listening for clients on ${formatHostPort(this.addr)}`);
    if (this.#token === undefined) {
      this.#log.warn("authentication is off (--no-auth): any client may register");
    }
    if (!transport.encrypted) {
      this.#log.warn("TLS is off (--no-tls): traffic between clients and this server can be read");
    }
    this.#options.signal?.addEventListener("abort", () => this.close(), { once: true });
    this.#accepting = acceptLoop(
      this.#listener,
      (incoming) => this.#router.handle(incoming),
      (reason) => this.#log.warn(`control listener: accept failed: ${reason}`),
      () => this.#handshakes.ready(),
    );
  }

  /** The TLS material the options ask for, or undefined for plaintext. */
  async #loadTls(): Promise<ServerTlsMaterial | undefined> {
    const tls = this.#options.tls ?? true;
    if (tls === false) return undefined;
    const stateDir = this.#options.stateDir ?? defaultStateDir();
    if (tls === true && stateDir === undefined) {
      this.#log.warn(
        "no state folder (HOME is not set and no --state-dir): this server's certificate " +
          "authority lives only as long as this process, so clients that pinned it will refuse " +
          "the next one; name a folder with --state-dir",
      );
    }
    const material = tls === true && stateDir !== undefined
      ? await generatedIdentity(stateDir, this.#log)
      : tls === true || tls === "ephemeral"
      ? await ephemeralIdentity()
      : await loadOwnCertificate(tls);
    this.fingerprint = formatFingerprint(material.fingerprint);
    this.#identity = material.fingerprint;
    return material;
  }

  #clusterHost(transport: Transport): ClusterHost {
    return {
      log: this.#log,
      rare: this.#rare,
      publicHost: this.#publicHost,
      heartbeatTimeoutMs: this.#sessionServices.heartbeatTimeoutMs,
      buffers: this.#sessionServices.buffers,
      transport,
      identity: transport.encrypted ? this.#identity : undefined,
      appOnPort: (port) =>
        [...this.#sessions.values()].flatMap((s) => [...s.apps.values()])
          .find((app) => app.entry.port === port),
      endSession: (id, reason) => this.#sessions.get(id)?.end(reason),
      web: () => this.#web,
      webStream: (host, user) => relayedWebStream(this.#web, this.#webMembers, host, user),
    };
  }

  get cluster(): ClusterInfo | undefined {
    return this.#cluster;
  }

  services(): ServiceInfo[] {
    const out: ServiceInfo[] = [];
    const seen = new Set<unknown>(); // the replicas of a shared app share one
    for (const session of this.#sessions.values()) {
      for (const app of session.stats()) {
        if (seen.has(app)) continue;
        seen.add(app);
        const { entry, traffic } = app;
        const { bytesIn, bytesOut } = traffic.bytes();
        const info: ServiceInfo = {
          group: entry.group,
          app: entry.app,
          port: entry.port,
          connections: traffic.connections,
          bytesIn,
          bytesOut,
          since: entry.since,
        };
        if (entry.description !== undefined) info.description = entry.description;
        if (entry.transport !== undefined) info.transport = entry.transport;
        out.push(info);
      }
    }
    return out.sort((a, b) => a.group.localeCompare(b.group) || a.app.localeCompare(b.app));
  }

  get dashboardAddr(): HostPort | undefined {
    return this.#dashboard?.addr;
  }

  get httpAddr(): HostPort | undefined {
    return this.#web?.edge.httpAddr;
  }

  get httpsAddr(): HostPort | undefined {
    return this.#web?.edge.httpsAddr;
  }

  groups(): GroupStatus[] {
    return this.#monitor.groups();
  }

  status(): ServerStatus {
    return this.#monitor.status();
  }

  events(): ServerEvent[] {
    return this.#monitor.events.list();
  }

  metrics(format: ExpositionFormat = "text"): string {
    return this.#monitor.metrics(format);
  }

  setPorts(spec: string): void {
    const ranges = parsePortSpec(spec);
    if (typeof ranges === "string") throw new ConfigError(`ports: ${ranges}`);
    this.#registry.setRanges(ranges);
    this.#log.info(`public ports are now ${spec}`);
  }

  setUsers(users: UserSpec[]): void {
    if (this.#credentials === undefined) {
      throw new ConfigError("users: cannot be combined with noAuth");
    }
    if (this.#token === undefined && users.length === 0) {
      throw new ConfigError("users: the list is empty and there is no shared token");
    }
    const next = new Credentials(users, this.#token);
    this.#credentials = next;
    for (const session of this.#sessions.values()) {
      const credential = next.lookup(session.group);
      // A local comparison of two values this server holds; nothing remote can time it.
      if (credential === undefined || credential.token.reveal() !== session.token.reveal()) {
        const message = "this group's credentials were revoked";
        this.#log.info(`group ${session.group}: ${message}; ending its session`);
        session.end(message, { type: "refused", code: "auth_failed", message });
      } else {
        session.quota = credential.quota;
      }
    }
    this.#log.info(`per-group credentials: ${next.size} entries`);
  }

  async close(): Promise<void> {
    if (this.#closing) return this.#closed;
    this.#closing = true;
    closeQuietly(this.#listener);
    this.#handshakes.close(); // the accept loop wakes and sees the closed listener
    await this.#accepting;
    await this.#cluster?.close(); // its claims are released at once, not left to run out
    await this.#dashboard?.close();
    this.#monitor.stop(); // the port is free only once the pending accept has ended
    const sessions = [...this.#sessions.values()];
    for (const session of sessions) {
      session.end("server shutting down", { type: "shutdown", reason: "server shutting down" });
    }
    await Promise.all(sessions.map((s) => s.done));
    await this.#web?.close();
    this.#log.info("server stopped");
    this.#resolveClosed();
  }
}
