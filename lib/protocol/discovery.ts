/**
 * The discovery phase: the server's one answer to a `query` (see
 * `handshake.ts`) before it hangs up: every exposed app with live figures
 * (`services`), the free public ports (`free_ports` with id 0), or a refusal.
 *
 * @module
 */

import { z } from "zod";
import { label, MAX_SERVICES, name, parseIn, port, refused, typesOf } from "./common.ts";
import { freePorts } from "./control.ts";

/** Answers a `query` for services: every exposed app with live figures. */
export const services = z.object({
  type: z.literal("services"),
  services: z.array(z.object({
    group: name,
    app: name,
    port,
    description: label.optional(),
    connections: z.int().min(0),
    bytesIn: z.number().min(0),
    bytesOut: z.number().min(0),
    since: z.iso.datetime(),
    /** A udp app (since v7). */
    transport: z.literal("udp").optional(),
  })).max(MAX_SERVICES),
  truncated: z.boolean(),
});

/** A `services` answer. */
export type Services = z.infer<typeof services>;

const answerOptions = [services, freePorts, refused] as const;
const answer = z.discriminatedUnion("type", answerOptions);
const answerTypes = typesOf(answerOptions);
/** The server's answer to a discovery query. */
export type DiscoveryAnswer = z.infer<typeof answer>;

/** Validates the answer to a query. Throws `ProtocolError`. */
export function parseDiscoveryAnswer(value: unknown): DiscoveryAnswer {
  return parseIn(answer, answerTypes, value, "server", (type) => `expected an answer, got ${type}`);
}
