/**
 * The control phase: what a control connection carries once the group is
 * registered. The client asks (`expose`, `unexpose`, `free_ports`) with
 * request ids the server's answers repeat; the server says on its own when
 * it closed an app (`unexposed` id 0) or is going away (`shutdown`). Both
 * sides ping. (Users travel on work connections, as mux streams.)
 *
 * @module
 */

import { z } from "zod";
import {
  label,
  MAX_ALLOW_FROM,
  MAX_FREE_RANGES,
  MAX_SERVE_SECONDS,
  name,
  parseIn,
  ping,
  pong,
  port,
  refused,
  requestId,
  text,
  typesOf,
} from "./common.ts";

/**
 * Per-tunnel limits, enforced by the server. Counts start afresh when the
 * client registers again after losing the server; serve time does not. A
 * limit left out does not apply.
 *
 * @example
 * ```ts
 * import { startClient, type TunnelLimits } from "@burrow/burrow";
 * const client = await startClient({ server: "127.0.0.1:7700", token: "s3cret", group: "lab" });
 * const limits: TunnelLimits = { maxServeSeconds: 3600, maxUsers: 5 };
 * const tunnel = await client.expose({ name: "demo", local: "127.0.0.1:3000", limits });
 * await tunnel.closed; // after an hour at most
 * ```
 */
export interface TunnelLimits {
  /** Close the tunnel (and its users) after this many seconds. */
  maxServeSeconds?: number;
  /** Turn users away while this many are connected. */
  maxUsers?: number;
  /** Close the tunnel after this many user connections (the last one is served). */
  maxConnections?: number;
}

/** Per-tunnel limits, as an `expose` carries them. */
const limitsObject = z.object({
  // setTimeout's longest delay (2^31-1 ms, 24.8 days); longer ones would fire at once.
  maxServeSeconds: z.number().positive().max(MAX_SERVE_SECONDS).optional(),
  maxUsers: z.int().min(1).max(1e9).optional(),
  maxConnections: z.int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
});

// The interface above is the schema's shape, written out for its docs: this
// fails to compile if the two ever differ (zod adds `| undefined` to optionals).
type Loose<T> = { [K in keyof T]?: T[K] | undefined };
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _limitsMatch: Same<Loose<TunnelLimits>, z.infer<typeof limitsObject>> = true;
/** The schema, typed as the interface (the check above makes that safe). */
const tunnelLimits = limitsObject as z.ZodType<TunnelLimits>;

/**
 * Checks an app's description and limits as the server will: a sentence
 * saying what is wrong, or undefined. (Sending a bad one would be refused.)
 */
export function checkExposeExtras(
  extras: { description?: string; limits?: unknown },
): string | undefined {
  if (extras.description !== undefined && !label.safeParse(extras.description).success) {
    return "description must be at most 1024 characters, with no control characters";
  }
  if (extras.limits !== undefined) {
    const result = limitsObject.strict().safeParse(extras.limits);
    if (!result.success) {
      const issue = result.error.issues[0];
      return `limits.${issue?.path.join(".") || ""}: ${issue?.message ?? "invalid"}`.replace(
        /\.: /,
        ": ",
      );
    }
  }
  return undefined;
}

/**
 * How a shared app's users are spread over its replicas: `round_robin`
 * (each in turn) or `least_conn` (the one with the fewest users now).
 */
export type BalancePolicy = "round_robin" | "least_conn";
/** Every {@linkcode BalancePolicy}. */
export const BALANCE_POLICIES = [
  "round_robin",
  "least_conn",
] as const satisfies readonly BalancePolicy[];

// ---- client -> server ------------------------------------------------------

/**
 * A web app's names (`type` http or tls): instead of a port, the server
 * claims host names for it on its shared `--http`/`--https` listeners.
 */
export const webApp = z.object({
  type: z.enum(["http", "tls"]),
  subdomain: name.optional(),
  hostnames: z.array(z.string().max(253)).max(32),
  paths: z.array(z.string().max(1024)).max(32),
  /** Basic auth checked by the server (the link is TLS unless --no-tls). */
  auth: z.object({ user: z.string().min(1).max(256), password: z.string().min(1).max(1024) })
    .optional(),
  hostHeader: z.string().max(260).optional(),
  httpsOnly: z.boolean().optional(),
});
/** A web app's names as `expose` carries them. */
export type WebApp = z.infer<typeof webApp>;

/** Longest `udp_idle_timeout`, in seconds (setTimeout's limit, as for serve time). */
export const MAX_UDP_IDLE_SECONDS = MAX_SERVE_SECONDS;
/** A UDP flow's idle timeout when the app names none (`udp_idle_timeout`), in seconds. */
export const DEFAULT_UDP_IDLE_TIMEOUT = 60;

/**
 * A UDP app (since v7): the server binds a UDP port instead of a TCP one,
 * each user address is a flow, and a flow silent for `idleTimeout` seconds ends.
 */
export const udpApp = z.object({ idleTimeout: z.number().positive().max(MAX_UDP_IDLE_SECONDS) });
/** A UDP app's settings as `expose` carries them. */
export type UdpApp = z.infer<typeof udpApp>;

/** Put an app on a public port. `port` 0 lets the server pick, preferring `hint`. */
export const expose = z.object({
  type: z.literal("expose"),
  id: requestId,
  app: name,
  port,
  hint: port.optional(),
  /** Free text shown by discovery. */
  description: label.optional(),
  /** Optional limits; the server closes the tunnel (or turns users away) when one is reached. */
  limits: tunnelLimits.optional(),
  /** Only users from these CIDR ranges may connect; the server checks each one. */
  allowFrom: z.array(z.string().max(64)).min(1).max(MAX_ALLOW_FROM).optional(),
  /** How users are spread over the replicas of a shared group's app (the first replica's wins). */
  balance: z.enum(BALANCE_POLICIES).optional(),
  /** An http or tls app: names on the shared web listeners instead of a port. */
  web: webApp.optional(),
  /** A UDP app: a public UDP port (`port`, `hint` as for tcp) and flows per user address. */
  udp: udpApp.optional(),
}).refine((e) => e.web === undefined || e.udp === undefined, "an app is web or udp, not both");
/**
 * A replica's health as the client's own checks of its local service see
 * it: an unhealthy replica gets no users until it says it is healthy again.
 */
export const health = z.object({
  type: z.literal("health"),
  app: name,
  healthy: z.boolean(),
  reason: text.optional(),
});

/** A `health` report. */
export type Health = z.infer<typeof health>;
/** Close an app's public port. */
export const unexpose = z.object({ type: z.literal("unexpose"), id: requestId, app: name });
/** Ask which public ports are free. */
export const freePortsRequest = z.object({ type: z.literal("free_ports"), id: requestId });
/** The client is stopping: free the group now. */
export const bye = z.object({ type: z.literal("bye") });

/** An `expose` request. */
export type Expose = z.infer<typeof expose>;

/** The messages of `ClientControlMessage` (the all-phase union is built from these too). */
export const clientControlOptions = [
  expose,
  unexpose,
  freePortsRequest,
  ping,
  pong,
  bye,
  health,
] as const;
const clientControl = z.discriminatedUnion("type", clientControlOptions);
const clientControlTypes = typesOf(clientControlOptions);
/** What a client may send on its control connection. */
export type ClientControlMessage = z.infer<typeof clientControl>;

/** Validates a frame from the client on a control connection. Throws `ProtocolError`. */
export function parseClientControl(value: unknown): ClientControlMessage {
  return parseIn(
    clientControl,
    clientControlTypes,
    value,
    "client",
    (type) => `unexpected ${type} message on a control connection`,
  );
}

// ---- server -> client ------------------------------------------------------

/** An app is live on a public port. Answers `expose` with the same id. */
export const exposed = z.object({
  type: z.literal("exposed"),
  id: requestId,
  app: name,
  port,
  /** For a web app (port 0): the URLs it is reached at. */
  urls: z.array(z.string().max(300)).max(64).optional(),
});
/**
 * An app's public port is closed. Answers `unexpose`, or comes unasked
 * (id 0) when the server closed it itself, e.g. because a limit was reached.
 */
export const unexposed = z.object({
  type: z.literal("unexposed"),
  id: requestId,
  app: name,
  reason: text.optional(),
});
/**
 * Free public ports as inclusive [from, to] ranges, the first
 * MAX_FREE_RANGES of them (`truncated` says more were left out). Answers
 * `free_ports` (on a control connection, or a discovery query with id 0).
 */
export const freePorts = z.object({
  type: z.literal("free_ports"),
  id: requestId,
  ranges: z.array(z.tuple([port, port])).max(MAX_FREE_RANGES),
  truncated: z.boolean(),
});
/** The server is going away; reconnect later. */
export const shutdown = z.object({ type: z.literal("shutdown"), reason: text });

/** A `free_ports` answer. */
export type FreePorts = z.infer<typeof freePorts>;

/** The messages of `ServerControlMessage` (the all-phase union is built from these too). */
export const serverControlOptions = [
  exposed,
  unexposed,
  refused,
  ping,
  pong,
  freePorts,
  shutdown,
] as const;
const serverControl = z.discriminatedUnion("type", serverControlOptions);
const serverControlTypes = typesOf(serverControlOptions);
/** What a server may send on a control connection (after `welcome`). */
export type ServerControlMessage = z.infer<typeof serverControl>;

/** Validates a frame from the server on a control connection. Throws `ProtocolError`. */
export function parseServerControl(value: unknown): ServerControlMessage {
  return parseIn(
    serverControl,
    serverControlTypes,
    value,
    "server",
    (type) => `unexpected ${type} message on the control connection`,
  );
}
