/**
 * The burrow server as a library: `startServer` binds the control listener,
 * checks every new connection's handshake, and runs one `ServerSession` per
 * authenticated client. Everything lives in the returned instance, so
 * several servers can run in one process.
 *
 * @module
 */

import type { ServiceInfo } from "../protocol/services.ts";
import { getLogger, type Logger } from "@logtape/logtape";
import { formatHostPort, type HostPort, parseHostPort, parsePortSpec } from "../util/addr.ts";
import { ConfigError, errorMessage, ListenError, ProtocolError } from "../util/errors.ts";
import { BufferPool } from "../tunnel/join.ts";
import { acceptLoop, closeQuietly, netReason, noDelay, peer } from "../transport/net.ts";
import { defaultStateDir } from "../util/state_dir.ts";
import { formatFingerprint } from "../transport/certs.ts";
import {
  ephemeralIdentity,
  generatedIdentity,
  loadOwnCertificate,
  type ServerTlsMaterial,
} from "../transport/server_identity.ts";
import {
  type ClientMessage,
  FrameReader,
  FrameWriter,
  HANDSHAKE_TIMEOUT_MS,
  MAX_FRAME_BYTES,
  MAX_HANDSHAKES,
  MAX_SERVICES,
  parseClientMessage,
  PROTOCOL_VERSION,
  TAKEOVER_PROBE_MS,
  TlsRecordError,
  versionMismatch,
  withDeadline,
} from "../protocol/protocol.ts";
import { consult, type ServerHooks } from "./hooks.ts";
import {
  checkDashboardOptions,
  Dashboard,
  type DashboardOptions,
  type DashboardSettings,
} from "../dashboard/http.ts";
import type { ServerEvent } from "../dashboard/events.ts";
import type { ExpositionFormat } from "../dashboard/metrics.ts";
import { type GroupStatus, ServerMonitor, type ServerStatus } from "../dashboard/monitor.ts";
import { Registry } from "./registry.ts";
import { newId, newNonce, Secret, verifyProof } from "../util/secret.ts";
import { freePortsAnswer, ServerSession, type SessionContext } from "./session.ts";
import { Credentials, type UserSpec } from "./users.ts";
import { DEFAULT_LIMITS, type ServerLimits } from "../config/limits.ts";
import { lockedOutMessage, SourceGuard, sourceOf } from "../util/source_guard.ts";
import { VERSION } from "../util/version.ts";

/**
 * Options for {@linkcode startServer}, including the hooks of
 * {@linkcode ServerHooks} (`onAuth`, `onExpose`, `onUserConnect`, `onClose`).
 *
 * @example
 * ```ts
 * import { type ServerOptions, startServer } from "@burrow/burrow";
 * const options: ServerOptions = {
 *   bind: "0.0.0.0:7700",
 *   token: "s3cret",
 *   ports: "6000-6100,7022",
 *   heartbeatTimeout: 30,
 *   onUserConnect: ({ user }) => user.startsWith("203.0.113.") || "not from the office",
 * };
 * const server = await startServer(options);
 * await server.close();
 * ```
 */
export interface ServerOptions extends ServerHooks {
  /**
   * Control listener, `HOST:PORT`; port 0 picks a free one.
   *
   * @default {"0.0.0.0:7700"}
   */
  bind?: string;
  /** Shared secret clients must prove they know. Required unless `noAuth`. */
  token?: string | Secret;
  /**
   * Accept any client without a token.
   *
   * @default {false}
   */
  noAuth?: boolean;
  /**
   * Public ports clients may claim.
   *
   * @default {"10000-20000"}
   */
  ports?: string;
  /**
   * Address the public listeners bind on.
   *
   * @default {"0.0.0.0"}
   */
  publicHost?: string;
  /**
   * Seconds of silence after which a client is dropped.
   *
   * @default {30}
   */
  heartbeatTimeout?: number;
  /**
   * TLS for control and work connections. `true` (the default): the server's
   * own certificate authority, made on first start in `stateDir` and reused
   * after. An object names the operator's own certificate chain and key (PEM
   * files). `"ephemeral"`: a CA made in memory for this run only, nothing
   * written (tests, demos; clients must pin this run's `fingerprint`).
   * `false`: plaintext, with a warning.
   *
   * @default {true}
   */
  tls?: boolean | "ephemeral" | { certFile: string; keyFile: string };
  /**
   * Where the generated certificate authority is kept.
   *
   * @default {"$STATE_DIRECTORY, $XDG_STATE_HOME/burrow or ~/.local/state/burrow"}
   */
  stateDir?: string;
  /**
   * Per-group credentials: each entry (a group, or a `prefix-*` family) has
   * its own token, ports, and app and connection quotas. Groups no entry
   * matches use `token`, if there is one. Replace them with `setUsers()`.
   */
  users?: UserSpec[];
  /** Limits against floods and guessing; each has a default in {@linkcode DEFAULT_LIMITS}. */
  limits?: Partial<ServerLimits>;
  /** Stops the server when aborted, like `close()`. */
  signal?: AbortSignal;
  /**
   * Serve the dashboard, its JSON API and Prometheus `/metrics` on this
   * address. Off by default; a non-loopback bind needs a password.
   */
  dashboard?: DashboardOptions;
}

export type { ServiceInfo };

/** A running server. */
export interface BurrowServer {
  /** The control listener's address as bound. */
  readonly addr: HostPort;
  /**
   * `sha256:HEX` of the CA that clients verify (the top certificate of the
   * chain), or undefined without TLS. Clients pin it with `fingerprint:`.
   */
  readonly fingerprint: string | undefined;
  /** Resolves when the server has stopped. */
  readonly closed: Promise<void>;
  /** Every exposed app with live figures. */
  services(): ServiceInfo[];
  /** The dashboard's address as bound, when it is on. */
  readonly dashboardAddr: HostPort | undefined;
  /** Groups online and recently offline, with their apps' figures (as `GET /api/groups`). */
  groups(): GroupStatus[];
  /** Version, uptime and totals (as `GET /api/status`). */
  status(): ServerStatus;
  /** Recent connects, reconnects, disconnects and refusals, oldest first (as `GET /api/events`). */
  events(): ServerEvent[];
  /** Every metric in the Prometheus text format, or OpenMetrics (as `GET /metrics`). */
  metrics(format?: ExpositionFormat): string;
  /**
   * Replaces the public ports clients may claim (e.g. on SIGHUP). Apps that
   * hold a port outside the new ranges keep it. Throws `ConfigError` for a
   * bad spec.
   */
  setPorts(spec: string): void;
  /**
   * Replaces the per-group credentials (e.g. on SIGHUP). Sessions whose
   * token changed or whose entry is gone (with no shared token to fall back
   * on) are ended as refused; new quotas apply to what comes next. Throws
   * `ConfigError` for a bad entry.
   */
  setUsers(users: UserSpec[]): void;
  /** Closes every listener and session; resolves when all are closed. */
  close(): Promise<void>;
}

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

const encoder = new TextEncoder();

class Server implements BurrowServer {
  #options: ServerOptions;
  #token: Secret | undefined;
  /** Undefined with `noAuth`. */
  #credentials: Credentials | undefined;
  #limits: ServerLimits;
  #guard: SourceGuard;
  #pending = { count: 0 };
  #log: Logger = getLogger(["burrow", "server"]);
  #listener!: Deno.Listener<Deno.Conn, Deno.NetAddr>;
  #tls: ServerTlsMaterial | undefined;
  #registry: Registry<ServerSession>;
  #sessions = new Map<string, ServerSession>();
  /** Connections in their handshake, with the source each is counted against. */
  #handshakes = new Map<Deno.Conn, string>();
  /**
   * Connections closed before their TLS handshake settled. Deno defers such a
   * close until the handshake ends, so the socket stays open as long as the
   * peer stalls: each keeps counting against the handshake limits until then.
   */
  #parked = new Map<Deno.Conn, string | undefined>();
  /** When each TLS connection's handshake has settled (either way). */
  #tlsSettled = new WeakMap<Deno.Conn, { done: boolean }>();
  #capacityWaiters: Array<() => void> = [];
  #lastRare = new Map<string, number>();
  #accepting: Promise<void> = Promise.resolve();
  #ctx: SessionContext;
  #monitor = new ServerMonitor();
  #dashboardSettings: DashboardSettings | undefined;
  #dashboard: Dashboard | undefined;
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
    this.#ctx = {
      registry: this.#registry,
      publicHost: options.publicHost ?? "0.0.0.0",
      heartbeatTimeoutMs: timeout * 1000,
      buffers: new BufferPool(),
      log: this.#log,
      hooks: options,
      monitor: this.#monitor,
      limits: this.#limits,
      pending: this.#pending,
      rare: (kind, message) => this.#rare(kind, message),
      ended: (session) => {
        if (this.#sessions.get(session.id) === session) this.#sessions.delete(session.id);
      },
    };
    if (options.dashboard) this.#dashboardSettings = checkDashboardOptions(options.dashboard);
    this.#closed = new Promise((resolve) => this.#resolveClosed = resolve);
  }

  get closed(): Promise<void> {
    return this.#closed;
  }

  async start(): Promise<void> {
    const bind = parseHostPort(this.#options.bind ?? "0.0.0.0:7700");
    if (typeof bind === "string") throw new ConfigError(`bind: ${bind}`);
    this.#tls = await this.#loadTls();
    // The public host is tried once here, so a typo fails the start instead of
    // turning every later expose into a refusal.
    const publicHost = this.#ctx.publicHost;
    try {
      Deno.listen({ hostname: publicHost, port: 0, transport: "tcp" }).close();
    } catch (err) {
      throw new ListenError(`cannot listen on public host ${publicHost}: ${netReason(err)}`);
    }
    try {
      this.#listener = this.#tls === undefined
        ? Deno.listen({ hostname: bind.hostname, port: bind.port, transport: "tcp" })
        : Deno.listenTls({ ...bind, cert: this.#tls.cert, key: this.#tls.key });
    } catch (err) {
      if (
        this.#tls !== undefined && !(err instanceof Deno.errors.AddrInUse) &&
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
    this.#monitor.start();
    const local = this.#listener.addr as Deno.NetAddr;
    this.addr = { hostname: local.hostname, port: local.port };
    this.#log.info(`listening for clients on ${formatHostPort(this.addr)}`);
    if (this.#token === undefined) {
      this.#log.warn("authentication is off (--no-auth): any client may register");
    }
    if (this.#tls === undefined) {
      this.#log.warn("TLS is off (--no-tls): traffic between clients and this server can be read");
    }
    this.#options.signal?.addEventListener("abort", () => this.close(), { once: true });
    this.#accepting = this.#accept();
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
    return material;
  }

  services(): ServiceInfo[] {
    const out: ServiceInfo[] = [];
    for (const session of this.#sessions.values()) {
      for (const { entry, stats } of session.stats()) {
        let bytesIn = stats.bytesIn;
        let bytesOut = stats.bytesOut;
        for (const live of stats.live) {
          bytesIn += live.aToB;
          bytesOut += live.bToA;
        }
        const info: ServiceInfo = {
          group: entry.group,
          app: entry.app,
          port: entry.port,
          connections: stats.connections,
          bytesIn,
          bytesOut,
          since: entry.since,
        };
        if (entry.description !== undefined) info.description = entry.description;
        out.push(info);
      }
    }
    return out.sort((a, b) => a.group.localeCompare(b.group) || a.app.localeCompare(b.app));
  }

  get dashboardAddr(): HostPort | undefined {
    return this.#dashboard?.addr;
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
    for (const conn of this.#handshakes.keys()) closeQuietly(conn);
    for (const wake of this.#capacityWaiters.splice(0)) wake(); // the accept loop sees the closed listener
    await this.#accepting;
    await this.#dashboard?.close();
    this.#monitor.stop(); // the port is free only once the pending accept has ended
    const sessions = [...this.#sessions.values()];
    for (const session of sessions) {
      session.end("server shutting down", { type: "shutdown", reason: "server shutting down" });
    }
    await Promise.all(sessions.map((s) => s.done));
    this.#log.info("server stopped");
    this.#resolveClosed();
  }

  #accept(): Promise<void> {
    return acceptLoop(
      this.#listener,
      (conn) => this.#handshake(conn),
      (reason) => this.#log.warn(`control listener: accept failed: ${reason}`),
      () => this.#capacity(),
    );
  }

  /**
   * Secures the connection (TLS), sends the challenge, and reads the
   * preamble and first frame, all under one deadline; then routes it.
   */
  async #handshake(conn: Deno.Conn): Promise<void> {
    const from = peer(conn);
    if (this.#tls !== undefined) {
      const state = { done: false };
      this.#tlsSettled.set(conn, state);
      (conn as Deno.TlsConn).handshake().then(() => {}, () => {}).finally(() => state.done = true);
    }
    if (this.#inFlight() >= MAX_HANDSHAKES) {
      // A flood of unauthenticated connections must not exhaust descriptors.
      this.#rare(
        "flood",
        `${MAX_HANDSHAKES} handshakes in flight: turning new connections away (latest ${from})`,
      );
      return this.#drop(conn, undefined);
    }
    const source = sourceOf((conn.remoteAddr as Deno.NetAddr).hostname);
    if (!this.#guard.enter(source)) {
      this.#rare(
        `source-flood`,
        `${this.#limits.handshakesPerSource} handshakes in flight from ${source}: ` +
          `turning its new connections away (limits.handshakes_per_source)`,
      );
      return this.#drop(conn, undefined);
    }
    noDelay(conn);
    this.#handshakes.set(conn, source);
    const reader = new FrameReader(conn);
    const writer = new FrameWriter(conn);
    const nonce = newNonce();
    try {
      const raw = await withDeadline(
        this.#greet(conn, reader, writer, nonce, from),
        HANDSHAKE_TIMEOUT_MS,
        `no hello within ${HANDSHAKE_TIMEOUT_MS / 1000}s`,
      );
      const version = (raw as { version?: unknown }).version;
      if (typeof version === "number" && version !== PROTOCOL_VERSION) {
        const message = versionMismatch(version, PROTOCOL_VERSION);
        this.#log.warn(`refused ${from}: ${message}`);
        this.#monitor.refused("version_mismatch", message, { addr: from });
        await writer.send({ type: "refused", code: "version_mismatch", message });
        return closeQuietly(conn);
      }
      const hello = parseClientMessage(raw);
      if (hello.type === "hello") {
        const proven = await this.#authenticate(conn, writer, nonce, hello);
        if (proven === false) return;
        this.#endHandshake(conn);
        return await this.#control(conn, reader, writer, hello, proven);
      }
      if (hello.type === "query") {
        // Still a handshake: counted against the cap, closed on shutdown, and
        // bounded in time, so a peer that never reads cannot hold it open.
        return await withDeadline(
          this.#answer(conn, writer, nonce, hello),
          HANDSHAKE_TIMEOUT_MS,
          `the answer was not taken within ${HANDSHAKE_TIMEOUT_MS / 1000}s`,
        );
      }
      if (hello.type === "work_hello") {
        const session = this.#sessions.get(hello.session);
        if (session === undefined) {
          // Not a guess at any token (no proof was checked): a client's pooled
          // work connections routinely arrive just after its session ended.
          this.#log.debug(`closed work connection from ${from}: unknown session`);
          return closeQuietly(conn);
        }
        const ok = this.#credentials === undefined ||
          await verifyProof(session.token, hello.proof, nonce, "work", hello.session);
        if (!ok) {
          this.#log.debug(`closed work connection from ${from}: wrong proof`);
          await this.#failed(source, from, "a work connection with a wrong proof");
          return closeQuietly(conn);
        }
        this.#endHandshake(conn);
        return session.addWork({ conn, reader, writer });
      }
      throw new ProtocolError(`expected hello, got ${hello.type}`);
    } catch (err) {
      if (err instanceof TlsRecordError) {
        this.#rare(
          "tls-client",
          `a client at ${from} speaks TLS, but this server runs with --no-tls: ` +
            `set tls: false in its group file, or turn TLS on here`,
        );
      }
      const why = err instanceof ProtocolError ? errorMessage(err) : netReason(err);
      if (!this.#closing) this.#log.debug(`closed connection from ${from}: ${why}`);
      closeQuietly(conn);
    } finally {
      this.#endHandshake(conn);
    }
  }

  /**
   * Ends a connection's handshake bookkeeping (once; later calls do nothing).
   * A connection whose TLS handshake has not settled is being closed, but
   * its socket lives on until it settles: it stays counted until then.
   */
  #endHandshake(conn: Deno.Conn): void {
    const source = this.#handshakes.get(conn);
    if (source === undefined) return;
    this.#handshakes.delete(conn);
    if (!this.#park(conn, source)) this.#freeSlot(source);
  }

  /** Closes a connection that was never counted, parking it if its socket outlives the close. */
  #drop(conn: Deno.Conn, source: string | undefined): void {
    closeQuietly(conn);
    this.#park(conn, source);
  }

  /** Counts a closed TLS connection until its handshake settles; false if it already has. */
  #park(conn: Deno.Conn, source: string | undefined): boolean {
    const state = this.#tlsSettled.get(conn);
    if (state === undefined || state.done) return false;
    closeQuietly(conn);
    this.#parked.set(conn, source);
    (conn as Deno.TlsConn).handshake().then(() => {}, () => {}).finally(() => {
      this.#parked.delete(conn);
      this.#freeSlot(source);
    });
    return true;
  }

  #freeSlot(source: string | undefined): void {
    if (source !== undefined) this.#guard.leave(source);
    if (this.#inFlight() < MAX_HANDSHAKES) {
      for (const wake of this.#capacityWaiters.splice(0)) wake();
    }
  }

  /** Connections in their handshake, plus closed ones whose socket lingers. */
  #inFlight(): number {
    return this.#handshakes.size + this.#parked.size;
  }

  /** Resolves once fewer than MAX_HANDSHAKES connections are in flight. */
  #capacity(): Promise<void> {
    if (this.#inFlight() < MAX_HANDSHAKES || this.#closing) return Promise.resolve();
    this.#rare(
      "flood",
      `${MAX_HANDSHAKES} handshakes in flight: turning new connections away until some end`,
    );
    return new Promise((resolve) => this.#capacityWaiters.push(resolve));
  }

  /**
   * Checks a hello's proof against its group's credential. On failure the
   * refusal is sent after a delay that grows with the source's failures, and
   * a source past its limit is locked out. False when refused; otherwise
   * the token the client proved it knows (undefined without authentication).
   */
  async #authenticate(
    conn: Deno.Conn,
    writer: FrameWriter,
    nonce: string,
    hello: Extract<ClientMessage, { type: "hello" }>,
  ): Promise<Secret | undefined | false> {
    const from = peer(conn);
    const source = this.#handshakes.get(conn) ?? from;
    const refuse = async (code: "auth_failed" | "locked_out", message: string) => {
      this.#log.info(`refused group ${hello.group} from ${from}: ${message}`);
      this.#monitor.refused(code, message, { addr: from, group: hello.group });
      await writer.send({ type: "refused", code, message }).catch(() => {});
      closeQuietly(conn);
      return false as const;
    };
    const credential = this.#credentials?.lookup(hello.group);
    const refusal = await this.#admit(
      source,
      from,
      `a login as group ${hello.group}`,
      () =>
        this.#credentials === undefined ||
        (credential !== undefined &&
          verifyProof(credential.token, hello.proof, nonce, "control", hello.group, hello.runId)),
    );
    if (refusal !== undefined) return await refuse(refusal.code, refusal.message);
    return credential?.token;
  }

  /**
   * Decides a login attempt from `source`: a locked-out source is refused
   * before `check` runs; a failed check is counted, answered after the delay
   * it earns, and may lock the source out. Undefined when admitted.
   */
  async #admit(
    source: string,
    from: string,
    what: string,
    check: () => boolean | Promise<boolean>,
  ): Promise<{ code: "auth_failed" | "locked_out"; message: string } | undefined> {
    const locked = this.#guard.lockedFor(source);
    if (locked > 0) return { code: "locked_out", message: lockedOutMessage(source, locked) };
    if (await check()) return undefined;
    return await this.#failed(source, from, what)
      ? { code: "locked_out", message: lockedOutMessage(source, this.#limits.lockoutSeconds) }
      : { code: "auth_failed", message: "authentication failed: wrong token" };
  }

  /**
   * Counts a failed login from `source` and waits the delay it earns.
   * True when this failure locked the source out.
   */
  async #failed(source: string, from: string, what: string): Promise<boolean> {
    const { delayMs, lockedOut } = this.#guard.failed(source);
    if (lockedOut) {
      this.#log.warn(
        `locking out ${source} for ${this.#limits.lockoutSeconds}s after ` +
          `${this.#limits.authFailures} failed logins (limits.auth_failures; latest: ${what} from ${from})`,
      );
    }
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    return lockedOut;
  }

  /** TLS handshake (when on), challenge, preamble and the first frame. */
  async #greet(
    conn: Deno.Conn,
    reader: FrameReader,
    writer: FrameWriter,
    nonce: string,
    from: string,
  ): Promise<unknown> {
    if (this.#tls !== undefined) {
      try {
        await (conn as Deno.TlsConn).handshake();
      } catch (err) {
        if (/corrupt message|InvalidContentType|InvalidMessage/i.test(errorMessage(err))) {
          this.#rare(
            "plaintext",
            `a client at ${from} sent plaintext, but this server requires TLS: ` +
              `remove tls: false from its group file`,
          );
        }
        throw err;
      }
    }
    await writer.send({ type: "challenge", version: PROTOCOL_VERSION, server: VERSION, nonce });
    await reader.readPreamble();
    const raw = await reader.read();
    if (raw === null) throw new ProtocolError("closed before saying hello");
    return raw;
  }

  /** Logs a warning at most once per 10 s per kind, so a flood cannot flood the log. */
  #rare(kind: string, message: string): void {
    const now = Date.now();
    if (now - (this.#lastRare.get(kind) ?? 0) < 10_000) return;
    this.#lastRare.set(kind, now);
    this.#log.warn(message);
  }

  async #control(
    conn: Deno.Conn,
    reader: FrameReader,
    writer: FrameWriter,
    hello: { group: string; runId: string; proof: string; client: string },
    proven: Secret | undefined,
  ): Promise<void> {
    const from = peer(conn);
    const refuse = async (
      code: "group_live" | "server_closing" | "forbidden" | "quota" | "auth_failed",
      message: string,
    ) => {
      this.#log.info(`refused group ${hello.group} from ${from}: ${message}`);
      this.#monitor.refused(code, message, { addr: from, group: hello.group });
      await writer.send({ type: "refused", code, message }).catch(() => {});
      closeQuietly(conn);
    };
    const forbidden = await consult("onAuth", this.#options.onAuth, {
      group: hello.group,
      addr: from,
      clientVersion: hello.client,
    }, this.#log);
    if (forbidden !== undefined) return refuse("forbidden", forbidden);
    const live = this.#registry.group(hello.group);
    if (live) {
      const old = live.session;
      if (old.runId === hello.runId) {
        old.end("replaced by the same client reconnecting");
      } else if (await old.probe(TAKEOVER_PROBE_MS)) {
        return refuse(
          "group_live",
          `group ${hello.group} is live from another client (${old.clientAddr})`,
        );
      } else {
        old.end(`taken over by ${from}: the old client did not answer a ping`);
      }
    }
    if (this.#closing) return refuse("server_closing", "the server is shutting down");
    if (this.#registry.group(hello.group)) {
      return refuse("group_live", `group ${hello.group} is live from another client`);
    }
    if (this.#sessions.size >= this.#limits.maxGroups) {
      this.#rare("max-groups", `${this.#limits.maxGroups} groups are live (limits.max_groups)`);
      return refuse("quota", `the server has its limit of ${this.#limits.maxGroups} groups live`);
    }
    const credential = this.#credentials?.lookup(hello.group);
    if (
      this.#credentials !== undefined &&
      (credential === undefined || proven === undefined ||
        // A local comparison of two values this server holds; nothing remote can time it.
        credential.token.reveal() !== proven.reveal())
    ) {
      // The users file changed while this client was in its handshake (the
      // hook and the takeover probe above wait): what it proved is revoked.
      return refuse("auth_failed", "authentication failed: wrong token");
    }
    const session = new ServerSession(this.#ctx, {
      id: newId(),
      group: hello.group,
      runId: hello.runId,
      clientVersion: hello.client,
      conn,
      reader,
      writer,
      token: credential?.token ?? NO_TOKEN,
      ...(credential?.quota === undefined ? {} : { quota: credential.quota }),
    });
    this.#registry.addGroup(hello.group, session);
    this.#sessions.set(session.id, session);
    this.#monitor.groupOnline(session);
    this.#log.info(`group ${hello.group} connected from ${from} (burrow ${hello.client})`);
    try {
      await session.run();
    } catch (err) {
      session.end(netReason(err));
    }
  }

  /** Answers a discovery query (services or free ports) and hangs up. */
  async #answer(
    conn: Deno.Conn,
    writer: FrameWriter,
    nonce: string,
    query: Extract<ClientMessage, { type: "query" }>,
  ): Promise<void> {
    const from = peer(conn);
    const what = query.what;
    try {
      const source = this.#handshakes.get(conn) ?? from;
      // With per-group credentials a query names its group and sees only that group.
      const credential = query.group === undefined
        ? (this.#token === undefined ? undefined : { token: this.#token })
        : this.#credentials?.lookup(query.group);
      const refusal = await this.#admit(
        source,
        from,
        `a ${what} query`,
        () =>
          this.#credentials === undefined ||
          (credential !== undefined &&
            verifyProof(credential.token, query.proof, nonce, "query", query.group ?? "")),
      );
      if (refusal !== undefined) {
        const { code, message } = refusal;
        this.#log.info(`refused a ${what} query from ${from}: ${message}`);
        this.#monitor.refused(code, `refused a ${what} query: ${message}`, { addr: from });
        return await writer.send({ type: "refused", code, message });
      }
      this.#log.debug(`answered a ${what} query from ${from}`);
      const quota = credential && "quota" in credential ? credential.quota : undefined;
      if (what === "free_ports") {
        return await writer.send(freePortsAnswer(this.#registry, 0, quota?.ports));
      }
      const all = this.services()
        // A group's own query sees that group; the shared token sees the groups
        // that use it, never those with their own entry in the users file.
        .filter((s) =>
          query.group === undefined
            ? this.#credentials?.lookup(s.group)?.quota === undefined
            : s.group === query.group
        )
        .map((s) => ({ ...s, since: s.since.toISOString() }));
      // As many as fit in one frame (descriptions may be long), at most MAX_SERVICES.
      const services: typeof all = [];
      let size = 100; // the envelope
      for (const service of all.slice(0, MAX_SERVICES)) {
        size += encoder.encode(JSON.stringify(service)).length + 1; // bytes, not characters
        if (size > MAX_FRAME_BYTES) break;
        services.push(service);
      }
      await writer.send({ type: "services", services, truncated: services.length < all.length });
    } finally {
      closeQuietly(conn);
    }
  }
}

/** The token of sessions on a server without authentication (never checked). */
const NO_TOKEN = new Secret("no-auth");

/** The limits with their defaults, each checked to be a whole number of at least 1. */
function checkLimits(given: Partial<ServerLimits>): ServerLimits {
  const limits = { ...DEFAULT_LIMITS, ...given };
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value < 1) {
      throw new ConfigError(`limits.${key}: must be a whole number of at least 1, got ${value}`);
    }
  }
  return limits;
}
