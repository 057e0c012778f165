/**
 * What every phase of the wire protocol shares: the field types of its
 * messages, the caps that keep any message inside one frame, the `refused`
 * message (any phase may end in one), and the parser each phase's read
 * function is built on.
 *
 * @module
 */

import { z } from "zod";
import { ProtocolError, REFUSAL_CODES } from "../util/errors.ts";

/** Group and app names: lowercase, digits and dashes, 1 to 63 characters. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Longest per-tunnel serve time, in seconds (setTimeout's limit). */
export const MAX_SERVE_SECONDS = 2_147_483;
/** Most `allow_from` ranges one app may list. */
export const MAX_ALLOW_FROM = 256;
/** Most services one discovery answer carries (it must also fit in a frame). */
export const MAX_SERVICES = 1024;
/** Most free-port ranges one answer carries; 4096 of them fit well inside a frame. */
export const MAX_FREE_RANGES = 4096;

/** A group or app name. */
export const name: z.ZodString = z.string().regex(NAME_PATTERN);
/** 32 random bytes in hex (nonces, proofs). */
export const hex64: z.ZodString = z.string().regex(/^[0-9a-f]{64}$/);
/** 16 random bytes in hex (session and run ids). */
export const hex32: z.ZodString = z.string().regex(/^[0-9a-f]{32}$/);
/** A TCP port, 0 meaning "any". */
export const port: z.ZodInt = z.int().min(0).max(65535);
/** A request, ping or work id. */
export const requestId: z.ZodInt = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
/** Free text for programs: bounded. */
export const text: z.ZodString = z.string().max(1024);
/** Free text shown to people: no control characters (no terminal escapes, no line breaks). */
export const label: z.ZodString = z.string().max(1024).regex(/^\P{Cc}*$/u);
/** A protocol version. */
export const version: z.ZodInt = z.int().min(0).max(1_000_000);

/** An address as a socket reports it: an IP address (v6 without brackets) and a port. */
export const netAddr = z.object({ hostname: z.string().max(64), port });

/** A refusal. With an id it answers that request; without, the session (or the query) ends. */
export const refused = z.object({
  type: z.literal("refused"),
  id: requestId.optional(),
  code: z.enum(REFUSAL_CODES),
  message: text,
});
/** A refusal as it arrives. */
export type Refused = z.infer<typeof refused>;

/** A liveness probe; either side sends it and the other answers with `pong`. */
export const ping = z.object({ type: z.literal("ping"), seq: requestId });
/** The answer to a `ping`, with its `seq`. */
export const pong = z.object({ type: z.literal("pong"), seq: requestId });

/** Which side sent a message, for error messages. */
export type Side = "client" | "server";

/**
 * Validates `value` as one of the messages `schema` admits. Throws
 * `ProtocolError`: `unexpected(type)` when it is a message of another phase
 * (or none at all), "invalid ... message" when it is of this phase but broken.
 */
export function parseIn<T>(
  schema: z.ZodType<T>,
  types: ReadonlySet<string>,
  value: unknown,
  from: Side,
  unexpected?: (type: string) => string,
): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const type = typeof value === "object" && value !== null && "type" in value
    ? value.type
    : undefined;
  if (unexpected !== undefined && typeof type === "string" && !types.has(type)) {
    throw new ProtocolError(unexpected(JSON.stringify(type).slice(0, 40)));
  }
  throw new ProtocolError(`invalid ${from} message of type ${quotedType(value)}`);
}

/** The `type` values of a discriminated union's options. */
export function typesOf(
  options: readonly { shape: { type: { value: string } } }[],
): ReadonlySet<string> {
  return new Set(options.map((o) => o.shape.type.value));
}

/** The `type` a rejected message claims, quoted and cut short for the error. */
function quotedType(value: unknown): string {
  if (typeof value !== "object" || value === null || !("type" in value)) return "(none)";
  const type = value.type;
  // Only a primitive is quoted. Turning an object into text would call a
  // `toString` the peer chose (a TypeError when it is not a function), and an
  // array recurses as deep as the peer nested it (a RangeError).
  if (typeof type === "object" && type !== null) {
    return Array.isArray(type) ? "(array)" : "(object)";
  }
  return JSON.stringify(String(type)).slice(0, 40);
}
