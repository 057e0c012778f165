/**
 * The figures of udp apps that a plain connection counter does not have:
 * datagrams each way and datagrams dropped, by cause. (A udp app's flows
 * and bytes are counted like a tcp app's connections and bytes, in its
 * `TrafficCounter`: a flow is a "connection".) One {@linkcode UdpCounter}
 * per group and app, kept across the client's reconnects like the other
 * per-app figures; the monitor adds them to the dashboard's app rows and to
 * `/metrics`.
 *
 * @module
 */

import type { MetricFamily, Sample } from "./metrics.ts";
import type { GroupStatus } from "./status_types.ts";

/**
 * Why a datagram from a user was dropped on the server: the app or the
 * group has its most flows (`limits.udp_flows_per_app`,
 * `limits.udp_flows_per_group`), the user is outside `allow_from`, no work
 * connection was up, or a queue was full (the mux writer's, or a new flow's
 * while the client opens its socket).
 */
export const UDP_DROP_CAUSES = [
  "app_flow_limit",
  "group_flow_limit",
  "allow_from",
  "no_work_connection",
  "queue_full",
] as const;
/** One of {@linkcode UDP_DROP_CAUSES}. */
export type UdpDropCause = typeof UDP_DROP_CAUSES[number];

/** Most udp counters kept; past it, new apps share no figures (they are not counted). */
const MAX_UDP_COUNTERS = 4096;

/** One udp app's datagram figures. */
export class UdpCounter {
  /** Datagrams from users passed to the client. */
  datagramsIn = 0;
  /** Datagrams from the app sent back to users. */
  datagramsOut = 0;
  /** Datagrams dropped, by cause. */
  readonly dropped: Record<UdpDropCause, number> = {
    app_flow_limit: 0,
    group_flow_limit: 0,
    allow_from: 0,
    no_work_connection: 0,
    queue_full: 0,
  };

  /** Every drop, whatever the cause. */
  get droppedTotal(): number {
    let n = 0;
    for (const cause of UDP_DROP_CAUSES) n += this.dropped[cause];
    return n;
  }
}

/** The udp counters of one server. */
export class UdpFigures {
  #counters = new Map<string, UdpCounter>();

  /** The counter of `group/app`, made on first use. */
  counter(group: string, app: string): UdpCounter {
    const key = `${group}\0${app}`;
    let found = this.#counters.get(key);
    if (!found) {
      found = new UdpCounter();
      if (this.#counters.size < MAX_UDP_COUNTERS) this.#counters.set(key, found);
    }
    return found;
  }

  /** Marks the udp apps among `groups`' rows and adds their datagram figures. */
  annotate(groups: GroupStatus[]): GroupStatus[] {
    for (const group of groups) {
      for (const app of group.apps) {
        const counter = this.#counters.get(`${group.name}\0${app.name}`);
        if (counter === undefined || app.type !== undefined) continue;
        app.type = "udp";
        app.udp = {
          datagramsIn: counter.datagramsIn,
          datagramsOut: counter.datagramsOut,
          dropped: counter.droppedTotal,
        };
      }
    }
    return groups;
  }

  /** `burrow_udp_datagrams` and `burrow_udp_dropped`, per app. */
  families(): MetricFamily[] {
    const datagrams: Sample[] = [];
    const dropped: Sample[] = [];
    const keys = [...this.#counters.keys()].sort();
    for (const key of keys) {
      const counter = this.#counters.get(key) as UdpCounter;
      const [group = "", app = ""] = key.split("\0");
      datagrams.push({ labels: { group, app, direction: "in" }, value: counter.datagramsIn });
      datagrams.push({ labels: { group, app, direction: "out" }, value: counter.datagramsOut });
      for (const cause of UDP_DROP_CAUSES) {
        dropped.push({ labels: { group, app, cause }, value: counter.dropped[cause] });
      }
    }
    return [
      {
        name: "burrow_udp_datagrams",
        help: "Datagrams through a udp app; direction in is users to the app, out the reverse.",
        type: "counter",
        samples: datagrams,
      },
      {
        name: "burrow_udp_dropped",
        help: "Datagrams from users a udp app dropped, by cause.",
        type: "counter",
        samples: dropped,
      },
    ];
  }
}
