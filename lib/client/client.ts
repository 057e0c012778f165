/**
 * The burrow client as a library. `startClient` connects to a server,
 * registers a group, and keeps it registered: it reconnects for ever with
 * backoff when the link drops (or goes silent), re-exposes every app, and
 * asks for the public port each app had before. Refusals are final.
 *
 * @module
 */

import { getLogger, type Logger } from "@logtape/logtape";
import { formatHostPort, type HostPort, parseHostPort } from "../util/addr.ts";
import { Inspector } from "../http/inspect/inspector.ts";
import { Backoff, sleep } from "../util/backoff.ts";
import { type ClientSession, openSession } from "./session.ts";
import type { Dialer } from "../transport/transport.ts";
import { ConfigError, errorMessage, RefusedError } from "../util/errors.ts";
import { BufferPool } from "../tunnel/join.ts";
import { newId, type Secret } from "../util/secret.ts";
import { ClientAdmin } from "./admin.ts";
import { type ClientStatus, clientStatus, LinkTracker } from "./status.ts";
import { TrafficCounter } from "../tunnel/traffic.ts";
import { type Tunnel, TunnelHandle, type TunnelLimits, type WantedApp } from "./tunnel.ts";
import type { BurrowClient, ClientEventDetail, ClientOptions, ExposeOptions } from "./api.ts";
import {
  checkAdmin,
  checkAllowFrom,
  checkBalance,
  checkClientOptions,
  checkExpose,
  checkProxy,
  checkProxyProtocol,
  clientTls,
  udpRequest,
  webRequest,
} from "./options.ts";
import { dialerFor } from "./connect.ts";
import { describeCandidate, type ServerCandidate, ServerList, systemLookup } from "./servers.ts";
import type { ProxyConfig } from "../transport/proxy_url.ts";
import type { ClientTls } from "../transport/tls_dialer.ts";
import { HealthCheck } from "./health.ts";
import { checkHealthOptions, type HealthOptions } from "../config/health.ts";

export type { BurrowClient, ClientEventDetail, ClientOptions, ExposeOptions };
export type { Tunnel, TunnelLimits, WantedApp };

/** A session that lasted this long resets the reconnect backoff. */
const STABLE_SESSION_MS = 5_000;

/**
 * Starts a client and resolves once it has registered its group. If the
 * server cannot be reached it keeps trying (until `signal` aborts); a
 * refusal (wrong token, group live elsewhere) rejects with `RefusedError`.
 *
 * @example
 * ```ts
 * import { startClient } from "@burrow/burrow";
 * const client = await startClient({ server: "127.0.0.1:7700", token: "s3cret", group: "lab" });
 * const tunnel = await client.expose({ name: "web", local: "127.0.0.1:8080" });
 * console.log(`public port ${tunnel.remotePort}`);
 * await client.close();
 * ```
 */
export async function startClient(options: ClientOptions): Promise<BurrowClient> {
  const client = new Client(options);
  await client.started;
  return client;
}

class Client extends EventTarget implements BurrowClient {
  readonly group: string;
  readonly started: Promise<void>;
  readonly closed: Promise<Error | undefined>;
  #servers: ServerList;
  #dialers = new Map<string, Dialer>();
  #tls: ClientTls;
  #proxy: ProxyConfig | undefined;
  #token: Secret;
  #runId = newId();
  #options: ClientOptions;
  #log: Logger = getLogger(["burrow", "client"]);
  #apps = new Map<string, WantedApp>();
  #session: ClientSession | undefined;
  #waiters = new Set<() => void>();
  #buffers = new BufferPool();
  #stop = new AbortController();
  #resolveClosed!: (reason: Error | undefined) => void;
  #startedSettled = false;
  #link: LinkTracker = new LinkTracker(this);
  #admin: ClientAdmin | undefined;
  #inspector: Inspector | undefined;
  #resolveStarted!: () => void;
  #rejectStarted!: (err: Error) => void;

  constructor(options: ClientOptions) {
    super();
    const { servers, token } = checkClientOptions(options);
    this.#options = options;
    const proxy = checkProxy(options.proxy);
    this.#proxy = proxy;
    this.#tls = clientTls(options);
    // Through a proxy the proxy resolves names; directly, each address of a name is a candidate.
    this.#servers = new ServerList(servers, proxy ? undefined : options.lookup ?? systemLookup);
    if (proxy) this.#log.info(`reaching the server through the proxy ${proxy.display}`);
    if (!this.#tls.enabled) {
      this.#log.warn("TLS is off (tls: false): the traffic to the server can be read on the way");
    }
    this.#token = token;
    this.group = options.group;
    this.started = new Promise((resolve, reject) => {
      this.#resolveStarted = resolve;
      this.#rejectStarted = reject;
    });
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    const admin = checkAdmin(options.admin);
    if (admin !== undefined) this.#admin = new ClientAdmin(admin, () => this.status());
    if (options.inspect !== undefined) {
      const bind = parseHostPort(options.inspect);
      if (typeof bind === "string") throw new ConfigError(`inspect: ${bind}`);
      this.#inspector = Inspector.listen({ bind });
    }
    options.signal?.addEventListener("abort", () => this.close(), { once: true });
    this.#run();
  }

  async expose(options: ExposeOptions): Promise<Tunnel> {
    const local = checkExpose(options);
    if (this.#apps.has(options.name)) {
      throw new RefusedError("app_exists", `app ${this.group}/${options.name} is already exposed`);
    }
    const port = options.remotePort ?? 0;
    const app: WantedApp = {
      name: options.name,
      local,
      requestedPort: port,
      port,
      tunnel: new TunnelHandle(() => app, () => this.#closeTunnel(app)),
      traffic: new TrafficCounter(),
    };
    if (options.description !== undefined) app.description = options.description;
    if (options.web !== undefined) app.web = webRequest(options);
    if (options.type === "udp") app.udp = udpRequest(options);
    if (options.web?.type === "http" && this.#inspector) app.inspector = this.#inspector;
    if (options.proxyProtocol !== undefined) {
      app.proxyProtocol = checkProxyProtocol(options.proxyProtocol);
    }
    if (options.allowFrom !== undefined) {
      checkAllowFrom(options.allowFrom);
      app.allowFrom = [...options.allowFrom];
    }
    if (options.balance !== undefined) app.balance = checkBalance(options.balance);
    if (options.health !== undefined) {
      const wrong = checkHealthOptions(options.health);
      if (wrong !== undefined) throw new ConfigError(wrong);
    }
    if (options.limits !== undefined) {
      app.limits = options.limits;
      const seconds = options.limits.maxServeSeconds;
      if (seconds !== undefined) app.expiresAt = Date.now() + seconds * 1000;
    }
    this.#apps.set(app.name, app);
    if (options.health !== undefined) app.health = this.#checkHealth(app, options.health);
    while (true) {
      const session = await this.#currentSession();
      try {
        await session.expose(app);
        return app.tunnel;
      } catch (err) {
        // Only a lost link is worth another try (the next session exposes it);
        // a refusal, or anything else on a live session, is this call's answer.
        if (!(err instanceof RefusedError) && session.ended) continue;
        this.#apps.delete(app.name);
        app.health?.stop();
        app.tunnel.resolveClosed(err instanceof Error ? err : new Error(String(err)));
        throw err;
      }
    }
  }

  /** Starts the health checks of an app; each change is logged and told to the server. */
  #checkHealth(app: WantedApp, health: HealthOptions): HealthCheck {
    const label = `${this.group}/${app.name}`;
    return new HealthCheck(app.local, health, (healthy, reason) => {
      if (healthy) this.#log.info(`${label}: health checks pass again`);
      else this.#log.warn(`${label}: unhealthy: ${reason ?? "checks failed"}`);
      if (this.#apps.get(app.name) === app) this.#session?.reportHealth(app);
    });
  }

  async freePorts(): Promise<number[]> {
    const ranges = await (await this.#currentSession()).freePorts();
    const out: number[] = [];
    for (const [from, to] of ranges) for (let p = from; p <= to; p++) out.push(p);
    return out;
  }

  status(): ClientStatus {
    return clientStatus(this.group, this.#servers.current.name, this.#link, this.#apps.values());
  }

  get serverHost(): string {
    return this.#servers.current.name.hostname;
  }

  /** The dialer of one candidate, made once and kept (it holds the settled trust). */
  #dialerOf(candidate: ServerCandidate): Dialer {
    const key = `${formatHostPort(candidate.name)} ${formatHostPort(candidate.at)}`;
    let dialer = this.#dialers.get(key);
    if (dialer === undefined) {
      dialer = dialerFor(candidate.name, this.#tls, this.#log, this.#proxy, candidate.at);
      this.#dialers.set(key, dialer);
    }
    return dialer;
  }

  get adminAddr(): HostPort | undefined {
    return this.#admin?.addr;
  }

  get inspectAddr(): HostPort | undefined {
    return this.#inspector?.addr;
  }

  async close(): Promise<void> {
    if (this.#stop.signal.aborted) return void (await this.closed);
    this.#stop.abort();
    if (!this.#startedSettled) this.#settleStarted(new Error("client closed before it connected"));
    await this.#session?.close("client stopped");
    this.#finish(undefined);
    await this.#admin?.close();
    await this.#inspector?.close();
  }

  #emit<K extends keyof ClientEventDetail>(type: K, detail: ClientEventDetail[K]): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #finish(reason: Error | undefined): void {
    for (const app of this.#apps.values()) {
      app.health?.stop();
      app.tunnel.resolveClosed(reason);
    }
    this.#apps.clear();
    for (const wake of this.#waiters) wake();
    this.#resolveClosed(reason);
    this.#emit("closed", { reason });
  }

  #settleStarted(err?: Error): void {
    this.#startedSettled = true;
    if (err) {
      this.started.catch(() => {});
      this.#rejectStarted(err);
    } else {
      this.#resolveStarted();
    }
  }

  /** The live session, waiting (through reconnects) for one if needed. */
  async #currentSession(): Promise<ClientSession> {
    while (true) {
      if (this.#stop.signal.aborted) throw new Error("client is closed");
      const session = this.#session;
      if (session && !session.ended) return session;
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          resolve();
        };
        this.#waiters.add(wake);
      });
    }
  }

  async #closeTunnel(app: WantedApp): Promise<void> {
    if (this.#apps.get(app.name) !== app) return;
    this.#apps.delete(app.name);
    app.health?.stop();
    const session = this.#session;
    if (session && !session.ended) await session.unexpose(app.name).catch(() => {});
    app.tunnel.resolveClosed(undefined);
  }

  async #run(): Promise<void> {
    const backoff = new Backoff({ maxMs: Math.min(this.#options.maxBackoffMs ?? 30_000, 30_000) });
    const signal = this.#stop.signal;
    const several = this.#servers.configured.length > 1;
    while (!signal.aborted) {
      const candidate = await this.#servers.next();
      const where = describeCandidate(candidate);
      let session: ClientSession;
      try {
        session = await openSession({
          server: candidate.name,
          dialer: this.#dialerOf(candidate),
          token: this.#token,
          group: this.group,
          runId: this.#runId,
          shared: this.#options.shared === true,
          heartbeatIntervalMs: (this.#options.heartbeatInterval ?? 10) * 1000,
          poolSize: this.#options.poolSize ?? 2,
          apps: this.#apps,
          buffers: this.#buffers,
          log: this.#log,
        });
      } catch (err) {
        if (err instanceof RefusedError) return this.#refused(err);
        if (signal.aborted) break;
        // The other candidates of this pass are tried at once; the backoff is for a whole pass.
        if (!this.#servers.passDone) {
          const next = "trying the next address";
          if (several) {
            this.#log.warn(`cannot reach server ${where}: ${errorMessage(err)}; ${next}`);
          } else this.#log.debug(`cannot reach server ${where}: ${errorMessage(err)}; ${next}`);
          continue;
        }
        const delay = backoff.next();
        this.#log.warn(
          `cannot reach server ${where}: ${errorMessage(err)}; retrying in ${secs(delay)}`,
        );
        this.#emit("reconnecting", { reason: errorMessage(err), delayMs: delay });
        await sleep(delay, signal);
        continue;
      }
      if (signal.aborted) {
        await session.close("client stopped");
        break;
      }
      this.#session = session;
      this.#emit("connected", { server: formatHostPort(candidate.name) });
      for (const wake of this.#waiters) wake();
      if (!this.#startedSettled) this.#settleStarted();
      let reason: string;
      const began = Date.now();
      let stable = false;
      try {
        reason = await session.run(
          (app) => {
            app.serverHost = candidate.name.hostname;
            this.#options.onReady?.(app.tunnel);
            this.#emit("ready", { tunnel: app.tunnel });
          },
          (app, err) => this.#appRefused(app, err),
          (app, reason) => this.#appRetired(app, reason),
        );
        // A session that lived a while was a real connection: back off afresh. One
        // dropped at once keeps the delay growing, so a flapping server is not hammered.
        stable = Date.now() - began >= STABLE_SESSION_MS;
        if (stable) backoff.reset();
      } catch (err) {
        if (err instanceof RefusedError) return this.#refused(err);
        reason = errorMessage(err);
      }
      if (signal.aborted) break;
      this.#servers.moveOn();
      // With other servers to go to, a server that stopped (or a link that had
      // been up a while) is left for the next one at once: that is failover.
      if (this.#servers.passSize > 1 && (stable || session.serverStopping)) {
        this.#log.warn(`lost server ${where}: ${reason}; moving to the next server`);
        this.#emit("reconnecting", { reason, delayMs: 0 });
        continue;
      }
      const delay = backoff.next();
      this.#log.warn(`lost server ${where}: ${reason}; reconnecting in ${secs(delay)}`);
      this.#emit("reconnecting", { reason, delayMs: delay });
      await sleep(delay, signal);
    }
  }

  #appRetired(app: WantedApp, reason: string): void {
    this.#log.info(`${this.group}/${app.name} closed by the server: ${reason}`);
    if (this.#apps.get(app.name) === app) this.#apps.delete(app.name);
    app.health?.stop();
    app.tunnel.resolveClosed(undefined);
  }

  #appRefused(app: WantedApp, err: RefusedError): void {
    this.#log.debug(`${this.group}/${app.name} refused by the server: ${err.message}`);
    this.#apps.delete(app.name);
    app.health?.stop();
    app.tunnel.resolveClosed(err);
  }

  #refused(err: RefusedError): void {
    this.#log.debug(`refused by the server: ${err.message}`);
    this.#stop.abort();
    if (!this.#startedSettled) this.#settleStarted(err);
    this.#finish(err);
  }
}

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}
