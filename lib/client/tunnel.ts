/**
 * What the client holds per app: the public {@linkcode Tunnel} handle, its
 * limits, and the state it keeps across reconnects ({@linkcode WantedApp}).
 * The client and its sessions share these types, so they live apart from both.
 *
 * @module
 */

import type { HostPort } from "../util/addr.ts";
import type { Duplex } from "../transport/transport.ts";
import type { TrafficCounter } from "../tunnel/traffic.ts";
import type { BalancePolicy, TunnelLimits } from "../protocol/protocol.ts";
import type { UdpApp, WebApp } from "../protocol/control.ts";
import type { HealthCheck } from "./health.ts";
import type { ProxyProtocolVersion } from "../tunnel/proxy_protocol.ts";

export type { TunnelLimits };

/**
 * One exposed app, as {@linkcode BurrowClient.expose} returns it.
 *
 * @example
 * ```ts
 * import { startClient } from "@burrow/burrow";
 * const client = await startClient({ server: "127.0.0.1:7700", token: "s3cret", group: "lab" });
 * const tunnel = await client.expose({ name: "web", local: "127.0.0.1:8080" });
 * const reason = await tunnel.closed;
 * console.log(`${tunnel.name} closed${reason ? `: ${reason.message}` : ""}`);
 * ```
 */
export interface Tunnel {
  /** The app's name. */
  readonly name: string;
  /** The local address dialled for every user connection. */
  readonly local: HostPort;
  /** The public port the server gave (updated after a reconnect); 0 for web apps. */
  readonly remotePort: number;
  /** For an http or tls app: the URLs it is reached at (empty for tcp and udp apps). */
  readonly urls: readonly string[];
  /** The server host it was last made live on, as dialled (for `ready` lines). */
  readonly serverHost: string;
  /** `udp` for a udp app (its `remotePort` is a UDP port), else `tcp` (web apps included). */
  readonly transport: "tcp" | "udp";
  /** Resolves when the tunnel is closed: undefined, or the refusal that closed it. */
  readonly closed: Promise<Error | undefined>;
  /** Closes the public port; the client stays connected. */
  close(): Promise<void>;
}

/** An app the client wants exposed, and its state across reconnects. */
export interface WantedApp {
  name: string;
  local: HostPort;
  /** As configured: 0 lets the server pick. */
  requestedPort: number;
  /** The port it has or last had; asked for again after a reconnect. */
  port: number;
  description?: string;
  limits?: TunnelLimits;
  allowFrom?: string[];
  /** Send the local service a PROXY protocol header of this version first. */
  proxyProtocol?: ProxyProtocolVersion;
  /** When `limits.maxServeSeconds` runs out (ms since the epoch). */
  expiresAt?: number;
  /** How the server spreads a shared app's users over its replicas. */
  balance?: BalancePolicy;
  /** The health checks of its local service, while it is exposed. */
  health?: HealthCheck;
  /** An http or tls app's names, as `expose` sends them. */
  web?: WebApp;
  /** The URLs the server gave a web app. */
  urls?: string[];
  /** The server host (as configured) it was last made live on. */
  serverHost?: string;
  /** A udp app's settings, as `expose` sends them. */
  udp?: UdpApp;
  /** Where an http app's streams go instead of straight to `local` (the request inspector). */
  inspector?: {
    handle(
      stream: Duplex,
      app: { name: string; local: HostPort },
      first?: Uint8Array,
    ): Promise<void>;
  };
  tunnel: TunnelHandle;
  /** User connections and bytes, for `status()`. */
  traffic: TrafficCounter;
}

/** The handle `expose` returns; reads the app's state as it changes. */
export class TunnelHandle implements Tunnel {
  #app: () => WantedApp;
  #close: () => Promise<void>;
  readonly closed: Promise<Error | undefined>;
  resolveClosed!: (reason: Error | undefined) => void;
  constructor(app: () => WantedApp, close: () => Promise<void>) {
    this.#app = app;
    this.#close = close;
    this.closed = new Promise((resolve) => this.resolveClosed = resolve);
  }
  get name(): string {
    return this.#app().name;
  }
  get local(): HostPort {
    return this.#app().local;
  }
  get remotePort(): number {
    return this.#app().port;
  }
  get urls(): readonly string[] {
    return this.#app().urls ?? [];
  }
  get serverHost(): string {
    return this.#app().serverHost ?? "";
  }
  get transport(): "tcp" | "udp" {
    return this.#app().udp === undefined ? "tcp" : "udp";
  }
  close(): Promise<void> {
    return this.#close();
  }
}
