/**
 * The work phase: a work connection, once proven, idles in the server's
 * pool (the client pings it now and then so NAT mappings survive) until the
 * server sends `start` for a user. The client answers `started` (raw bytes
 * follow, both ways) or `start_failed`. Nothing else is ever framed on it.
 *
 * @module
 */

import { z } from "zod";
import { name, netAddr, parseIn, ping, requestId, text, typesOf } from "./common.ts";

/**
 * On a work connection: join it to a user of this app. Raw bytes follow.
 * `source` is the user's address, `destination` the public address they
 * connected to (for a PROXY protocol header to the local service).
 */
export const start = z.object({
  type: z.literal("start"),
  id: requestId,
  app: name,
  user: text,
  source: netAddr,
  destination: netAddr,
});
/** On a work connection: the local app answered; raw bytes follow. */
export const started = z.object({ type: z.literal("started") });
/** On a work connection: the local app could not be reached. */
export const startFailed = z.object({ type: z.literal("start_failed"), message: text });

/** The server's `start`. */
export type Start = z.infer<typeof start>;

const replyOptions = [ping, started, startFailed] as const;
const reply = z.discriminatedUnion("type", replyOptions);
const replyTypes = typesOf(replyOptions);
/** What a client may send on a work connection: keepalive pings, then its answer to `start`. */
export type WorkReply = z.infer<typeof reply>;

/** Validates a frame from the client on a work connection. Throws `ProtocolError`. */
export function parseWorkReply(value: unknown): WorkReply {
  return parseIn(
    reply,
    replyTypes,
    value,
    "client",
    (type) => `unexpected ${type} on a work connection`,
  );
}

const startTypes = typesOf([start]);

/** Validates the server's frame on a work connection: a `start`. Throws `ProtocolError`. */
export function parseStart(value: unknown): Start {
  return parseIn(start, startTypes, value, "server", (type) => `expected start, got ${type}`);
}
