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
import { Backoff, sleep } from "../util/backoff.ts";
import { type ClientSession, openSession } from "./session.ts";
import { type ClientTls, ServerLink } from "../transport/server_link.ts";
import { parseProxyUrl } from "../transport/proxy_url.ts";
import type { ProxyProtocolVersion } from "../tunnel/proxy_protocol.ts";
import { parseCidr } from "../util/cidr.ts";
import { defaultStateDir } from "../util/state_dir.ts";
import { normalizeFingerprint, pemCertificates } from "../transport/certs.ts";
import { ConfigError, errorMessage, RefusedError } from "../util/errors.ts";
import { BufferPool } from "../tunnel/join.ts";
import { checkExposeExtras, MAX_ALLOW_FROM, NAME_PATTERN } from "../protocol/protocol.ts";
import { newId, Secret } from "../util/secret.ts";
import { ClientAdmin } from "./admin.ts";
import { type ClientStatus, clientStatus, LinkTracker } from "./status.ts";
import { TrafficCounter } from "../tunnel/traffic.ts";
import { type Tunnel, TunnelHandle, type TunnelLimits, type WantedApp } from "./tunnel.ts";

export type { Tunnel, TunnelLimits, WantedApp };

/** A session that lasted this long resets the reconnect backoff. */
const STABLE_SESSION_MS = 5_000;

/**
 * Options for {@linkcode startClient}.
 *
 * @example
 * ```ts
 * import { type ClientOptions, startClient } from "@burrow/burrow";
 * const options: ClientOptions = {
 *   server: "tunnel.example.com:7700",
 *   token: "s3cret",
 *   group: "lab",
 *   heartbeatInterval: 5,
 *   signal: AbortSignal.timeout(60_000),
 *   onReady: (tunnel) => console.log(`${tunnel.name} is live on port ${tunnel.remotePort}`),
 * };
 * const client = await startClient(options);
 * await client.expose({ name: "web", local: "127.0.0.1:8080" });
 * ```
 */
export interface ClientOptions {
  /** The server's control address, `HOST:PORT`. */
  server: string;
  /** The shared secret; must not be empty. */
  token: string | Secret;
  /**
   * The group this client registers: 1-63 lowercase letters, digits or
   * dashes, unique among live groups.
   */
  group: string;
  /**
   * Seconds between pings.
   *
   * @default {10}
   */
  heartbeatInterval?: number;
  /**
   * Idle work connections kept open for fast joins.
   *
   * @default {8}
   */
  poolSize?: number;
  /**
   * Largest reconnect delay in ms. Larger values are capped at 30000.
   *
   * @default {30000}
   */
  maxBackoffMs?: number;
  /**
   * How to secure the connection to the server. `true` (the default): TLS,
   * verifying the server against the system roots and trusting an unknown
   * server's own CA on first use (recorded in `stateDir`). An object pins the
   * server's CA by `fingerprint` (`sha256:HEX`, colons and case ignored) or
   * verifies it against the CA file `ca`. `false`: plaintext (a warning is
   * logged; the token never crosses the wire, but the traffic is readable).
   *
   * @default {true}
   */
  tls?: boolean | { fingerprint?: string; ca?: string };
  /**
   * Where servers trusted on first use are recorded (`known_servers`).
   *
   * @default {"$STATE_DIRECTORY, $XDG_STATE_HOME/burrow or ~/.local/state/burrow"}
   */
  stateDir?: string;
  /** Stops the client when aborted, like `close()`. */
  signal?: AbortSignal;
  /** Called each time an app goes live: at first and after every reconnect. */
  onReady?: (tunnel: Tunnel) => void;
  /**
   * Serve `GET /api/status` (link state, retries, apps, ports, bytes) on
   * this `HOST:PORT`; port 0 picks a free one. Off by default.
   */
  admin?: string;
  /**
   * Reach the server through this proxy: `http://[user:pass@]host:port`
   * (HTTP CONNECT) or `socks5://[user:pass@]host:port`. The control and every
   * work connection go through it, with TLS on top as usual. A failing proxy
   * is retried like an unreachable server. Off by default.
   */
  proxy?: string | Secret;
}

/**
 * What to expose, for {@linkcode BurrowClient.expose}.
 *
 * @example
 * ```ts
 * import { type ExposeOptions, startClient } from "@burrow/burrow";
 * const client = await startClient({ server: "127.0.0.1:7700", token: "s3cret", group: "lab" });
 * const ssh: ExposeOptions = {
 *   name: "ssh",
 *   local: "127.0.0.1:22",
 *   remotePort: 2222,
 *   description: "the lab's ssh",
 * };
 * const tunnel = await client.expose(ssh);
 * console.log(`ssh -p ${tunnel.remotePort} user@tunnel.example.com`);
 * ```
 */
export interface ExposeOptions {
  /** App name, unique within the group: 1-63 lowercase letters, digits or dashes. */
  name: string;
  /** `HOST:PORT` dialled for every user connection. */
  local: string;
  /**
   * Public port; 0 or absent lets the server pick. After a reconnect the
   * client asks for the port the app had before.
   *
   * @default {0}
   */
  remotePort?: number;
  /** Free text shown by discovery (`client.ts --services`). */
  description?: string;
  /** Optional limits; the tunnel closes itself when one is reached. */
  limits?: TunnelLimits;
  /**
   * Only users from these address ranges (CIDR, e.g. `203.0.113.0/24`,
   * `2001:db8::/32`, or one address) may connect; the server turns others
   * away before any byte reaches this client.
   */
  allowFrom?: string[];
  /**
   * Send the local service a PROXY protocol header (`v1` text or `v2`
   * binary) before any byte of the user, naming the user's address and the
   * public address they connected to. Off by default.
   */
  proxyProtocol?: ProxyProtocolVersion;
}

/**
 * Events a client dispatches (as `CustomEvent`s with this `detail`):
 * `ready` each time an app goes live (at first and after every reconnect),
 * `reconnecting` when the link is lost or the server cannot be reached and a
 * retry is scheduled, `closed` once when the client stops.
 */
export interface ClientEventDetail {
  /** An app went live (also after a reconnect). */
  ready: { tunnel: Tunnel };
  /** The link is down; the next attempt comes after `delayMs`. */
  reconnecting: { reason: string; delayMs: number };
  /** The client stopped: `reason` is undefined, or the refusal that stopped it. */
  closed: { reason: Error | undefined };
  /** The client registered its group with the server (at first and after every reconnect). */
  connected: { server: string };
}

/**
 * A running client. It is an `EventTarget`: see {@linkcode ClientEventDetail}.
 *
 * @example
 * ```ts
 * import { type ClientEventDetail, startClient } from "@burrow/burrow";
 * const client = await startClient({ server: "127.0.0.1:7700", token: "s3cret", group: "lab" });
 * client.addEventListener("reconnecting", (e) => {
 *   const { reason, delayMs } = (e as CustomEvent<ClientEventDetail["reconnecting"]>).detail;
 *   console.log(`lost the server (${reason}); retrying in ${delayMs} ms`);
 * });
 * ```
 */
export interface BurrowClient extends EventTarget {
  /** The group this client registered. */
  readonly group: string;
  /** The server host as dialled, for `ready` lines. */
  readonly serverHost: string;
  /** Resolves when the client stops: undefined, or the refusal that stopped it. */
  readonly closed: Promise<Error | undefined>;
  /** Exposes an app; resolves once it is live, rejects with `RefusedError`. */
  expose(options: ExposeOptions): Promise<Tunnel>;
  /** Public ports the server would still give out. */
  freePorts(): Promise<number[]>;
  /** The link's state, retries, and each app's state, public address and traffic. */
  status(): ClientStatus;
  /** The admin listener's address as bound, when `admin` was given. */
  readonly adminAddr: HostPort | undefined;
  /** Deregisters and closes every tunnel. */
  close(): Promise<void>;
}

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
  readonly serverHost: string;
  readonly started: Promise<void>;
  readonly closed: Promise<Error | undefined>;
  #server: HostPort;
  #serverLink: ServerLink;
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
  #resolveStarted!: () => void;
  #rejectStarted!: (err: Error) => void;

  constructor(options: ClientOptions) {
    super();
    const server = parseHostPort(options.server);
    if (typeof server === "string") throw new ConfigError(`server: ${server}`);
    if (!NAME_PATTERN.test(options.group)) {
      throw new ConfigError(
        `group: "${options.group}" must be 1-63 lowercase letters, digits or dashes`,
      );
    }
    const token = typeof options.token === "string" ? new Secret(options.token) : options.token;
    if (token.reveal() === "") throw new ConfigError("token: must not be empty");
    this.#options = options;
    this.#server = server;
    const proxy = options.proxy === undefined ? undefined : parseProxyUrl(
      typeof options.proxy === "string" ? options.proxy : options.proxy.reveal(),
    );
    if (typeof proxy === "string") throw new ConfigError(`proxy: ${proxy}`);
    this.#serverLink = new ServerLink(server, clientTls(options), this.#log, proxy);
    if (proxy) this.#log.info(`reaching the server through the proxy ${proxy.display}`);
    if (!this.#serverLink.encrypted) {
      this.#log.warn("TLS is off (tls: false): the traffic to the server can be read on the way");
    }
    this.#token = token;
    this.group = options.group;
    this.serverHost = server.hostname;
    this.started = new Promise((resolve, reject) => {
      this.#resolveStarted = resolve;
      this.#rejectStarted = reject;
    });
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    if (options.admin !== undefined) {
      const admin = parseHostPort(options.admin);
      if (typeof admin === "string") throw new ConfigError(`admin: ${admin}`);
      this.#admin = new ClientAdmin(admin, () => this.status());
    }
    options.signal?.addEventListener("abort", () => this.close(), { once: true });
    this.#run();
  }

  async expose(options: ExposeOptions): Promise<Tunnel> {
    if (!NAME_PATTERN.test(options.name)) {
      throw new ConfigError(
        `name: "${options.name}" must be 1-63 lowercase letters, digits or dashes`,
      );
    }
    const local = parseHostPort(options.local);
    if (typeof local === "string") throw new ConfigError(`local: ${local}`);
    const extras = checkExposeExtras(options);
    if (extras !== undefined) throw new ConfigError(extras);
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
    if (options.proxyProtocol !== undefined) {
      if (options.proxyProtocol !== "v1" && options.proxyProtocol !== "v2") {
        throw new ConfigError(
          `proxyProtocol: must be "v1" or "v2", got "${options.proxyProtocol}"`,
        );
      }
      app.proxyProtocol = options.proxyProtocol;
    }
    if (options.allowFrom !== undefined) {
      if (options.allowFrom.length === 0 || options.allowFrom.length > MAX_ALLOW_FROM) {
        throw new ConfigError(`allowFrom: must list 1 to ${MAX_ALLOW_FROM} address ranges`);
      }
      for (const range of options.allowFrom) {
        const parsed = parseCidr(range);
        if (typeof parsed === "string") throw new ConfigError(`allowFrom: ${parsed}`);
      }
      app.allowFrom = [...options.allowFrom];
    }
    if (options.limits !== undefined) {
      app.limits = options.limits;
      const seconds = options.limits.maxServeSeconds;
      if (seconds !== undefined) app.expiresAt = Date.now() + seconds * 1000;
    }
    this.#apps.set(app.name, app);
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
        app.tunnel.resolveClosed(err instanceof Error ? err : new Error(String(err)));
        throw err;
      }
    }
  }

  async freePorts(): Promise<number[]> {
    const ranges = await (await this.#currentSession()).freePorts();
    const out: number[] = [];
    for (const [from, to] of ranges) for (let p = from; p <= to; p++) out.push(p);
    return out;
  }

  status(): ClientStatus {
    return clientStatus(this.group, this.#server, this.#link, this.#apps.values());
  }

  get adminAddr(): HostPort | undefined {
    return this.#admin?.addr;
  }

  async close(): Promise<void> {
    if (this.#stop.signal.aborted) return void (await this.closed);
    this.#stop.abort();
    if (!this.#startedSettled) this.#settleStarted(new Error("client closed before it connected"));
    await this.#session?.close("client stopped");
    this.#finish(undefined);
    await this.#admin?.close();
  }

  #emit<K extends keyof ClientEventDetail>(type: K, detail: ClientEventDetail[K]): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #finish(reason: Error | undefined): void {
    for (const app of this.#apps.values()) app.tunnel.resolveClosed(reason);
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
    const session = this.#session;
    if (session && !session.ended) await session.unexpose(app.name).catch(() => {});
    app.tunnel.resolveClosed(undefined);
  }

  async #run(): Promise<void> {
    const backoff = new Backoff({ maxMs: Math.min(this.#options.maxBackoffMs ?? 30_000, 30_000) });
    const signal = this.#stop.signal;
    const where = formatHostPort(this.#server);
    while (!signal.aborted) {
      let session: ClientSession;
      try {
        session = await openSession({
          server: this.#server,
          link: this.#serverLink,
          token: this.#token,
          group: this.group,
          runId: this.#runId,
          heartbeatIntervalMs: (this.#options.heartbeatInterval ?? 10) * 1000,
          poolSize: this.#options.poolSize ?? 8,
          apps: this.#apps,
          buffers: this.#buffers,
          log: this.#log,
        });
      } catch (err) {
        if (err instanceof RefusedError) return this.#refused(err);
        if (signal.aborted) break;
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
      this.#emit("connected", { server: where });
      for (const wake of this.#waiters) wake();
      if (!this.#startedSettled) this.#settleStarted();
      let reason: string;
      const began = Date.now();
      try {
        reason = await session.run(
          (app) => {
            this.#options.onReady?.(app.tunnel);
            this.#emit("ready", { tunnel: app.tunnel });
          },
          (app, err) => this.#appRefused(app, err),
          (app, reason) => this.#appRetired(app, reason),
        );
        // A session that lived a while was a real connection: back off afresh. One
        // dropped at once keeps the delay growing, so a flapping server is not hammered.
        if (Date.now() - began >= STABLE_SESSION_MS) backoff.reset();
      } catch (err) {
        if (err instanceof RefusedError) return this.#refused(err);
        reason = errorMessage(err);
      }
      if (signal.aborted) break;
      const delay = backoff.next();
      this.#log.warn(`lost server ${where}: ${reason}; reconnecting in ${secs(delay)}`);
      this.#emit("reconnecting", { reason, delayMs: delay });
      await sleep(delay, signal);
    }
  }

  #appRetired(app: WantedApp, reason: string): void {
    this.#log.info(`${this.group}/${app.name} closed by the server: ${reason}`);
    if (this.#apps.get(app.name) === app) this.#apps.delete(app.name);
    app.tunnel.resolveClosed(undefined);
  }

  #appRefused(app: WantedApp, err: RefusedError): void {
    this.#log.debug(`${this.group}/${app.name} refused by the server: ${err.message}`);
    this.#apps.delete(app.name);
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

/** The TLS settings of the options, checked; reads a `ca` file now. */
export function clientTls(
  options: { tls?: ClientOptions["tls"] | undefined; stateDir?: string | undefined },
): ClientTls {
  const tls = options.tls ?? true;
  if (tls === false) return { enabled: false };
  const out: ClientTls = { enabled: true };
  const stateDir = options.stateDir ?? defaultStateDir();
  if (stateDir !== undefined) out.stateDir = stateDir;
  if (tls === true) return out;
  if (tls.fingerprint !== undefined) {
    const hex = normalizeFingerprint(tls.fingerprint);
    if (hex === undefined) {
      throw new ConfigError(
        `fingerprint: expected sha256: and 64 hex digits, got "${tls.fingerprint.slice(0, 80)}"`,
      );
    }
    out.fingerprint = hex;
  }
  if (tls.ca !== undefined) {
    let pem: string;
    try {
      pem = Deno.readTextFileSync(tls.ca);
    } catch (err) {
      throw new ConfigError(`ca: cannot read ${tls.ca}: ${errorMessage(err)}`);
    }
    if (pemCertificates(pem).length === 0) {
      throw new ConfigError(`ca: ${tls.ca} holds no PEM certificate`);
    }
    out.ca = { pem, file: tls.ca };
  }
  return out;
}
