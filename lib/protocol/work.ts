/**
 * The work phase: a work connection, once proven with `work_hello`, carries
 * a mux session (`lib/transport/mux/`), and each user is one stream the
 * server opens on it. The stream's header is the `start` message, as JSON;
 * raw bytes follow both ways. The client's first byte on the stream says it
 * reached the app; a reset says it could not (see `lib/server/work_conn.ts`).
 *
 * @module
 */

import { z } from "zod";
import { name, netAddr, parseIn, requestId, text, typesOf } from "./common.ts";

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
});

/** The server's `start`. */
export type Start = z.infer<typeof start>;

const startTypes = typesOf([start]);

/** Validates the header of a work stream: a `start`. Throws `ProtocolError`. */
export function parseStart(value: unknown): Start {
  return parseIn(start, startTypes, value, "server", (type) => `expected start, got ${type}`);
}
