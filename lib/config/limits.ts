/**
 * The server's limits with their defaults: each is a `limits.*` key of the
 * server file and an option of `startServer`. The server enforces them
 * (`lib/server/`); the login guard counts per source (`lib/util/source_guard.ts`).
 *
 * @module
 */

import { ConfigError } from "../util/errors.ts";
/** Most apps one group may expose at once, and the default of `limits.max_apps_per_group`. */
export const MAX_APPS_PER_GROUP = 128;

/** Most servers a client's `server` may list (a cluster's nodes). */
export const MAX_SERVERS = 16;

/** Every limit, as `startServer` takes them. */
export interface ServerLimits {
  /** Groups live at once (key `limits.max_groups`). */
  maxGroups: number;
  /** Apps one group may expose at once (`limits.max_apps_per_group`). */
  maxAppsPerGroup: number;
  /** Users waiting for a work connection, all groups together (`limits.max_pending_users`). */
  maxPendingUsers: number;
  /** Connections in their handshake from one source (`limits.handshakes_per_source`). */
  handshakesPerSource: number;
  /** Failed logins from one source before it is locked out (`limits.auth_failures`). */
  authFailures: number;
  /** How long a lockout lasts, and how long failures are remembered (`limits.lockout_seconds`). */
  lockoutSeconds: number;
  /** UDP flows (user addresses) one udp app serves at once (`limits.udp_flows_per_app`). */
  udpFlowsPerApp: number;
  /** UDP flows one group's udp apps serve at once, together (`limits.udp_flows_per_group`). */
  udpFlowsPerGroup: number;
}

/** The defaults: generous for real use, tight enough that a flood cannot exhaust the server. */
export const DEFAULT_LIMITS: Readonly<ServerLimits> = {
  maxGroups: 1024,
  maxAppsPerGroup: MAX_APPS_PER_GROUP,
  maxPendingUsers: 4096,
  handshakesPerSource: 64,
  authFailures: 10,
  lockoutSeconds: 300,
  udpFlowsPerApp: 1024,
  udpFlowsPerGroup: 4096,
};

/** The limits with their defaults, each checked to be a whole number of at least 1. */
export function checkLimits(given: Partial<ServerLimits>): ServerLimits {
  const limits = { ...DEFAULT_LIMITS, ...given };
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value < 1) {
      throw new ConfigError(`limits.${key}: must be a whole number of at least 1, got ${value}`);
    }
  }
  return limits;
}
