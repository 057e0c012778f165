/**
 * The client's public shape: the options `startClient` takes, what
 * `expose` takes, the events it dispatches and the running client it
 * returns. `client.ts` implements them.
 *
 * @module
 */

import type { HostPort } from "../util/addr.ts";
import type { Secret } from "../util/secret.ts";
import type { ClientStatus } from "./status.ts";
import type { Tunnel, TunnelLimits } from "./tunnel.ts";
import type { ProxyProtocolVersion } from "../tunnel/proxy_protocol.ts";
import type { BalancePolicy } from "../protocol/protocol.ts";
import type { HealthOptions } from "../config/health.ts";

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
  /**
   * The server's control address, `HOST:PORT`, or several (a cluster's
   * nodes): the client stays on the one it reached and moves to the next
   * when that one goes. A name with several addresses is tried address by
   * address the same way.
   */
  server: string | readonly string[];
  /**
   * Looks up every address of a server's host name (default: the system
   * resolver, `/etc/hosts` then DNS). Not used through a `proxy`.
   */
  lookup?: (hostname: string) => Promise<string[]>;
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
   * Work connections kept to the server, each carrying many users as mux
   * streams (1 to 4; more are capped at 4).
   *
   * @default {2}
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
   * Serve the request inspector (a page and `GET /api/requests` with the
   * last requests of the group's http apps, and replay) on this `HOST:PORT`.
   * Off by default.
   */
  inspect?: string;
  /**
   * Reach the server through this proxy: `http://[user:pass@]host:port`
   * (HTTP CONNECT) or `socks5://[user:pass@]host:port`. The control and every
   * work connection go through it, with TLS on top as usual. A failing proxy
   * is retried like an unreachable server. Off by default.
   */
  proxy?: string | Secret;
  /**
   * The group is shared: several clients with the group's token serve it
   * at once, and an app several of them expose has one public port and
   * several replicas the server spreads users over. Every client of the
   * group must set it.
   *
   * @default {false}
   */
  shared?: boolean;
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
  /**
   * How the server spreads users over the replicas of a shared group's app:
   * `round_robin` (each in turn) or `least_conn` (the fewest users now).
   * The first replica's choice holds.
   *
   * @default {"round_robin"}
   */
  balance?: BalancePolicy;
  /**
   * Check the local service now and then (`{ tcp: true }` or
   * `{ http: "/healthz" }`, with `interval` and `fails`); while it fails the
   * server sends this client's replica no users.
   */
  health?: HealthOptions;
  /**
   * An `http` or `tls` app: reached by name on the server's shared web
   * listeners instead of a port (`remotePort` must then be absent).
   */
  web?: WebExposeOptions;
  /**
   * `udp`: a public UDP port instead of a TCP one (CONTRACT "UDP apps");
   * each user address is a flow with a UDP socket of its own to `local`.
   *
   * @default {"tcp"}
   */
  type?: "tcp" | "udp";
  /**
   * A udp app's flow ends after this many seconds without a datagram
   * either way (the group file's `udp_idle_timeout`).
   *
   * @default {60}
   */
  udpIdleTimeout?: number;
}

/** An http or tls app's names and settings (CONTRACT "App types"). */
export interface WebExposeOptions {
  /** `http`: served by the server's edge; `tls`: passed through by SNI. */
  type: "http" | "tls";
  /** `SUBDOMAIN.DOMAIN` on a server with `--domain`; absent: `APP-GROUP.DOMAIN`. */
  subdomain?: string;
  /** More names (each must resolve to the server). */
  hostnames?: string[];
  /** Path prefixes (http only); the longest match wins. */
  paths?: string[];
  /** Basic auth checked at the server (http only). */
  auth?: { user: string; password: string | Secret };
  /** `Host` sent to the local app (http only). */
  hostHeader?: string;
  /** Plain-HTTP requests get a 308 to https (http only). */
  httpsOnly?: boolean;
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
  /** The server host as dialled (the one reached last), for `ready` lines. */
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
  /** The request inspector's address as bound, when `inspect` was given. */
  readonly inspectAddr: HostPort | undefined;
  /** Deregisters and closes every tunnel. */
  close(): Promise<void>;
}
