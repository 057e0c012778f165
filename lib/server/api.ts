/**
 * The server's public shape: the options `startServer` takes and the
 * running server it returns. `server.ts` implements them.
 *
 * @module
 */

import type { ServiceInfo } from "../protocol/services.ts";
import type { HostPort } from "../util/addr.ts";
import type { Secret } from "../util/secret.ts";
import type { ServerHooks } from "./hooks.ts";
import type { UserSpec } from "./users.ts";
import type { ServerLimits } from "../config/limits.ts";
import type { DashboardOptions } from "../dashboard/http.ts";
import type { ServerEvent } from "../dashboard/events.ts";
import type { ExpositionFormat } from "../dashboard/metrics.ts";
import type { GroupStatus, ServerStatus } from "../dashboard/monitor.ts";

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
  /** Shared web listeners for `http` and `tls` apps (CONTRACT "App types"). */
  web?: WebOptions;
  /** Join a cluster of servers sharing one store (CONTRACT "Cluster"; docs/cluster.md). */
  cluster?: ClusterOptions;
}

/**
 * A cluster node's settings. All nodes share the store, `secret`, `ports`,
 * tokens and users.
 *
 * @example
 * ```ts
 * import { startServer } from "@burrow/burrow";
 * const server = await startServer({
 *   token: "s3cret",
 *   cluster: { store: "redis://10.0.0.5:6379", relay: "10.0.0.2:7800", secret: "a-long-shared-secret" },
 * });
 * console.log(server.cluster?.node);
 * await server.close();
 * ```
 */
export interface ClusterOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://`. */
  store: string;
  /** This node's name, unique in the cluster. @default host name plus a short random suffix */
  node?: string;
  /** Where this node accepts relay links from the others, `HOST:PORT` (port 0: any). */
  relay: string;
  /** What the others dial for it. @default the relay address as bound */
  advertise?: string;
  /** Proves a node to the others (at least 16 characters). */
  secret: string | Secret;
  /** How long a registration waits for an unreachable store before the client is told to retry. @default 8000 */
  registrationWaitMs?: number;
}

/** A node's place in its cluster, once joined. */
export interface ClusterInfo {
  /** This node's name. */
  readonly node: string;
  /** The store, `HOST:PORT`, no credentials. */
  readonly store: string;
  /** The relay listener as bound. */
  readonly relay: HostPort;
  /** What the others dial. */
  readonly advertise: string;
}

/**
 * The server's web side: `--http`, `--https`, `--domain`, certificates and
 * ACME. Files are PEM.
 *
 * @example
 * ```ts
 * import { startServer } from "@burrow/burrow";
 * const server = await startServer({
 *   token: "s3cret",
 *   web: { http: "0.0.0.0:80", https: "0.0.0.0:443", domain: "tunnel.example.org",
 *     acme: { email: "ops@example.org" } },
 * });
 * await server.close();
 * ```
 */
export interface WebOptions {
  /** The plain listener, `HOST:PORT`. */
  http?: string;
  /** The TLS listener, `HOST:PORT` (terminates http apps, passes tls apps through by SNI). */
  https?: string;
  /** Apps are named `SUBDOMAIN.DOMAIN`. */
  domain?: string;
  /** The default certificate (a PEM chain file). */
  cert?: string;
  /** Its private key (a PEM file). */
  key?: string;
  /** More certificates, chosen by SNI. */
  certs?: { cert: string; key: string }[];
  /** Automatic certificates; kept in `stateDir`. `ca` is a CA file for a private ACME server. */
  acme?: { email?: string; directory?: string; ca?: string };
}

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
  /** The plain web listener's address as bound, when it is on. */
  readonly httpAddr: HostPort | undefined;
  /** The TLS web listener's address as bound, when it is on. */
  readonly httpsAddr: HostPort | undefined;
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
  /** The cluster this server joined, when `cluster` is given. */
  readonly cluster: ClusterInfo | undefined;
  /** Closes every listener and session; resolves when all are closed. */
  close(): Promise<void>;
}
