/**
 * What a client reports about itself, for its admin API and the status
 * table it prints: the state of its link to the server, its retries, and
 * each app's public address, state and traffic. `LinkTracker` follows the
 * client's own events, so the reconnect loop needs no bookkeeping of its own.
 *
 * @module
 */

import { formatHostPort, type HostPort } from "../util/addr.ts";
import type { TrafficCounter } from "../tunnel/traffic.ts";
import { VERSION } from "../util/version.ts";

/** The client's link to its server. */
export type LinkState = "connecting" | "connected" | "reconnecting" | "closed";

/** One app, as `GET /api/status` and the status table show it. */
export interface ClientAppStatus {
  /** The app's name. */
  name: string;
  /** The local `HOST:PORT` dialled for each user. */
  local: string;
  /** The public port (the one asked for, or last had, while not live; 0: any). */
  remotePort: number;
  /** `server-host:port` (`udp://server-host:port` for a udp app) where users reach it, while it is live. */
  publicAddr: string | null;
  /** `live` once the server confirmed it on the current link, `pending` until then. */
  state: "live" | "pending";
  /** User connections open now. */
  connections: number;
  /** User connections served since the client started. */
  connectionsTotal: number;
  /** Bytes from users to the app. */
  bytesIn: number;
  /** Bytes from the app to users. */
  bytesOut: number;
}

/** A client's status. */
export interface ClientStatus {
  /** The client's burrow version. */
  version: string;
  /** The group it registers. */
  group: string;
  /** The link to the server. */
  server: {
    /** The server as dialled, `HOST:PORT`. */
    addr: string;
    /** Where the link is now. */
    state: LinkState;
    /** When the link entered its state (ISO time). */
    since: string;
    /** Failed attempts since the link was last up. */
    retries: number;
    /** Times the link came back after being lost. */
    reconnects: number;
    /** Why the last attempt failed or the link was lost, if it was. */
    lastError?: string;
  };
  /** Every app the client wants exposed. */
  apps: ClientAppStatus[];
}

/** What the status needs of an app the client wants exposed (`WantedApp` fits). */
export interface TrackedApp {
  name: string;
  local: HostPort;
  port: number;
  traffic: TrafficCounter;
  /** Set for a udp app. */
  udp?: unknown;
}

/** Follows a client's `connected`, `ready`, `reconnecting` and `closed` events. */
export class LinkTracker {
  state: LinkState = "connecting";
  since = new Date();
  retries = 0;
  reconnects = 0;
  lastError: string | undefined;
  #wasUp = false;
  #live = new Set<string>();

  /** Subscribes to `client`'s events. */
  constructor(client: EventTarget) {
    client.addEventListener("connected", () => {
      if (this.#wasUp) this.reconnects++;
      this.#wasUp = true;
      this.#enter("connected");
      this.retries = 0;
    });
    client.addEventListener("ready", (e) => {
      const name = (e as CustomEvent<{ tunnel: { name: string } }>).detail.tunnel.name;
      this.#live.add(name);
    });
    client.addEventListener("reconnecting", (e) => {
      this.lastError = (e as CustomEvent<{ reason: string }>).detail.reason;
      if (this.state === "connected") this.#enter("reconnecting");
      else this.retries++;
      this.#live.clear();
    });
    client.addEventListener("closed", () => {
      this.#enter("closed");
      this.#live.clear();
    });
  }

  /** Whether an app is live on the current link. */
  isLive(name: string): boolean {
    return this.#live.has(name);
  }

  #enter(state: LinkState): void {
    this.state = state;
    this.since = new Date();
  }
}

/** Builds the status from the tracker and the apps. */
export function clientStatus(
  group: string,
  server: HostPort,
  link: LinkTracker,
  apps: Iterable<TrackedApp>,
): ClientStatus {
  const status: ClientStatus = {
    version: VERSION,
    group,
    server: {
      addr: formatHostPort(server),
      state: link.state,
      since: link.since.toISOString(),
      retries: link.retries,
      reconnects: link.reconnects,
    },
    apps: [...apps].map((app): ClientAppStatus => {
      const live = link.isLive(app.name);
      const bytes = app.traffic.bytes();
      return {
        name: app.name,
        local: formatHostPort(app.local),
        remotePort: app.port,
        publicAddr: live
          ? `${app.udp === undefined ? "" : "udp://"}${
            formatHostPort({ hostname: server.hostname, port: app.port })
          }`
          : null,
        state: live ? "live" : "pending",
        connections: app.traffic.connections,
        connectionsTotal: app.traffic.total,
        bytesIn: bytes.bytesIn,
        bytesOut: bytes.bytesOut,
      };
    }).sort((a, b) => a.name.localeCompare(b.name)),
  };
  if (link.lastError !== undefined) status.server.lastError = link.lastError;
  return status;
}
