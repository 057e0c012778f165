/**
 * The work phase: a work connection, once proven with `work_hello`, carries
 * a mux session (`lib/transport/mux/`), and each user is one stream the
 * server opens on it. The stream's header is the `start` message, as JSON;
 * raw bytes follow both ways. The client's first byte on the stream says it
 * reached the app; a reset says it could not (see `lib/server/work_conn.ts`).
 * Where the server asks for a lazy answer, that byte travels in the frame of
 * the app's first bytes, which saves each user connection a frame and a
 * system call on both ends.
 *
 * A UDP flow (since v7) is a stream too, whose header is `udp_flow`: it
 * names the flow id, the app and the user's address. The client opens a UDP
 * socket to the app for it and answers the same one byte; from then on the
 * flow's datagrams travel as mux DATAGRAM frames carrying that flow id, both
 * ways, on the same mux session (they go ahead of stream data, so a bulk TCP
 * user never delays them). No bytes travel on the stream itself: it lives as
 * long as the flow, and either side ends the flow by closing or resetting it
 * (the server does when the flow has been idle `udp_idle_timeout` seconds,
 * the client when its socket fails); a lost session ends its flows with it.
 *
 * @module
 */

import { z } from "zod";
import { name, NAME_PATTERN, netAddr, parseIn, requestId, text, typesOf } from "./common.ts";

/**
 * The header of a work stream: join it to a user of this app. `source` is
 * the user's address, `destination` the public address they connected to
 * (for a PROXY protocol header to the local service).
 */
export const start = z.object({
  type: z.literal("start"),
  id: requestId,
  app: name,
  user: text,
  source: netAddr,
  destination: netAddr,
  /**
   * `lazy`: the client's one-byte answer need not be a write of its own; it
   * may lead the app's first bytes (at most {@linkcode LAZY_ANSWER_MS}
   * later). The server asks it where nothing waits for the answer before the
   * user's bytes flow (a tcp app with one replica). Absent: answer at once.
   * Older clients ignore it and answer at once.
   */
  answer: z.literal("lazy").optional(),
});

/** The longest a lazy answer waits for the app's first bytes, in ms. */
export const LAZY_ANSWER_MS = 200;

/** The server's `start`. */
export type Start = z.infer<typeof start>;

const startTypes = typesOf([start]);

/** Validates the header of a work stream: a `start`. Throws `ProtocolError`. */
export function parseStart(value: unknown): Start {
  return parseIn(start, startTypes, value, "server", (type) => `expected start, got ${type}`);
}

/** Largest flow id: a DATAGRAM frame carries it in 32 bits. */
export const MAX_FLOW_ID = 0xffff_ffff;

/**
 * The header of a UDP flow's stream: datagrams with flow id `flow` on this
 * mux session are this user's (`source`) datagrams to and from the app.
 */
export const udpFlow = z.object({
  type: z.literal("udp_flow"),
  flow: z.int().min(0).max(MAX_FLOW_ID),
  app: name,
  source: netAddr,
  destination: netAddr,
});

/** The server's `udp_flow`. */
export type UdpFlow = z.infer<typeof udpFlow>;

/** What a work stream's header may be. */
export type WorkHeader = Start | UdpFlow;

const workHeaderOptions = [start, udpFlow] as const;
const workHeader = z.discriminatedUnion("type", workHeaderOptions);
const workHeaderTypes = typesOf(workHeaderOptions);

/**
 * Validates the header of a work stream: a `start` or a `udp_flow`. Throws
 * `ProtocolError`. A well-formed `start` (one per user connection) is checked
 * by hand first, by the schema's own rules, since the schema costs several µs
 * per header; anything else, or anything off, goes to the schema, which
 * decides and names the fault.
 */
export function parseWorkHeader(value: unknown): WorkHeader {
  const quick = quickStart(value);
  if (quick !== undefined) return quick;
  return parseIn(
    workHeader,
    workHeaderTypes,
    value,
    "server",
    (type) => `expected start or udp_flow, got ${type}`,
  );
}

/** `start`'s rules by hand: the same value the schema gives, or undefined (then the schema decides). */
function quickStart(value: unknown): Start | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { type, id, app, user, source, destination, answer } = value as Record<string, unknown>;
  if (type !== "start" || !Number.isSafeInteger(id) || (id as number) < 0) return undefined;
  if (typeof app !== "string" || !NAME_PATTERN.test(app)) return undefined;
  if (typeof user !== "string" || user.length > 1024) return undefined;
  if (answer !== undefined && answer !== "lazy") return undefined;
  const from = quickAddr(source);
  const to = quickAddr(destination);
  if (from === undefined || to === undefined) return undefined;
  const start: Start = { type, id: id as number, app, user, source: from, destination: to };
  if (answer === "lazy") start.answer = answer;
  return start;
}

function quickAddr(value: unknown): { hostname: string; port: number } | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { hostname, port } = value as Record<string, unknown>;
  if (typeof hostname !== "string" || hostname.length > 64) return undefined;
  if (!Number.isSafeInteger(port) || (port as number) < 0 || (port as number) > 65535) {
    return undefined;
  }
  return { hostname, port: port as number };
}
