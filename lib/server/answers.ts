/**
 * Discovery answers: what the server says to a `query` (the services it
 * serves, or its free ports) and to a control connection's `free_ports`.
 * Each answer must fit in one frame, so long lists are cut and say so.
 *
 * @module
 */

import type { PortRange } from "../util/addr.ts";
import type { ServiceInfo } from "../protocol/services.ts";
import {
  type FreePorts,
  MAX_FRAME_BYTES,
  MAX_FREE_RANGES,
  MAX_SERVICES,
  type Services,
} from "../protocol/protocol.ts";
import type { Registry } from "./registry.ts";
import type { Credential, Credentials } from "./users.ts";

const encoder = new TextEncoder();

/** The `free_ports` answer: the first MAX_FREE_RANGES free ranges, saying if more were left out. */
export function freePortsAnswer<S>(
  registry: Registry<S>,
  id: number,
  within?: readonly PortRange[],
): FreePorts {
  const ranges = registry.freeRanges(within);
  return {
    type: "free_ports",
    id,
    ranges: ranges.slice(0, MAX_FREE_RANGES),
    truncated: ranges.length > MAX_FREE_RANGES,
  };
}

/**
 * The `services` answer for a query that proved `group`'s token (or, with
 * `group` undefined, the shared token): a group's own query sees that
 * group; the shared token sees the groups that use it, never those with
 * their own entry in the users file. As many as fit in one frame
 * (descriptions may be long), at most MAX_SERVICES.
 */
export function servicesAnswer(
  all: ServiceInfo[],
  group: string | undefined,
  credentials: Credentials | undefined,
): Services {
  const visible = all
    .filter((s) =>
      group === undefined ? credentials?.lookup(s.group)?.quota === undefined : s.group === group
    )
    .map((s) => ({ ...s, since: s.since.toISOString() }));
  const services: typeof visible = [];
  let size = 100; // the envelope
  for (const service of visible.slice(0, MAX_SERVICES)) {
    size += encoder.encode(JSON.stringify(service)).length + 1; // bytes, not characters
    if (size > MAX_FRAME_BYTES) break;
    services.push(service);
  }
  return { type: "services", services, truncated: services.length < visible.length };
}

/** The ports a query's credential may see free: its group's own allowance, if it has one. */
export function queryPorts(credential: Credential | undefined): readonly PortRange[] | undefined {
  return credential?.quota?.ports;
}
