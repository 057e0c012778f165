/**
 * The handshake phase: what is said on a new connection before it becomes a
 * control connection, a work connection or a one-shot discovery question.
 * The server speaks first with a `challenge` (its shape is frozen across
 * versions); the client answers with one first message, `hello`,
 * `work_hello` or `query`, each proving it knows the token for the nonce. A
 * `hello` is answered with `welcome` or `refused`.
 *
 * @module
 */

import { z } from "zod";
import { hex32, hex64, name, parseIn, refused, text, typesOf, version } from "./common.ts";

/** Every first frame on a new connection must arrive within this bound. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;

/** First frame on every connection, from the server. Its shape is frozen across versions. */
export const challenge = z.object({
  type: z.literal("challenge"),
  version,
  server: text,
  nonce: hex64,
});
/** The control connection is authenticated and owns the group. */
export const welcome = z.object({
  type: z.literal("welcome"),
  session: hex32,
  heartbeatTimeout: z.number().positive().max(86_400),
});

/** Opens a control connection for a group. */
export const hello = z.object({
  type: z.literal("hello"),
  version,
  client: text,
  group: name,
  runId: hex32,
  proof: hex64,
  /** The group is shared: other clients with the same token may serve it too (v5). */
  shared: z.boolean().optional(),
});
/** Opens a work connection for a session. */
export const workHello = z.object({
  type: z.literal("work_hello"),
  version,
  session: hex32,
  proof: hex64,
});
/**
 * A one-shot question instead of a hello (discovery): the server answers
 * with `services` or `free_ports` (id 0) and closes.
 */
export const query = z.object({
  type: z.literal("query"),
  version,
  what: z.enum(["services", "free_ports"]),
  /**
   * The group whose token made the proof, for servers with per-group
   * credentials; the answer then covers that group only.
   */
  group: name.optional(),
  proof: hex64,
});

/** A `hello`: the first message of a control connection. */
export type Hello = z.infer<typeof hello>;
/** A `work_hello`: the first message of a work connection. */
export type WorkHello = z.infer<typeof workHello>;
/** A `query`: the first and only message of a discovery connection. */
export type Query = z.infer<typeof query>;

/** The messages of `FirstMessage` (the all-phase union is built from these too). */
export const firstOptions = [hello, workHello, query] as const;
const first = z.discriminatedUnion("type", firstOptions);
const firstTypes = typesOf(firstOptions);
/** What a client may send first on a new connection. */
export type FirstMessage = z.infer<typeof first>;

/** Validates the client's first message (after the version check). Throws `ProtocolError`. */
export function parseFirstMessage(value: unknown): FirstMessage {
  return parseIn(first, firstTypes, value, "client", (type) => `expected hello, got ${type}`);
}

const greetingOptions = [challenge, refused] as const;
const greeting = z.discriminatedUnion("type", greetingOptions);
const greetingTypes = typesOf(greetingOptions);
/** What the server says first: its challenge, or a refusal. */
export type Greeting = z.infer<typeof greeting>;

/** Validates the server's first message. Throws `ProtocolError`. */
export function parseGreeting(value: unknown): Greeting {
  return parseIn(
    greeting,
    greetingTypes,
    value,
    "server",
    (type) => `expected challenge, got ${type}`,
  );
}

const helloReplyOptions = [welcome, refused] as const;
const helloReply = z.discriminatedUnion("type", helloReplyOptions);
const helloReplyTypes = typesOf(helloReplyOptions);
/** The server's answer to a `hello`. */
export type HelloReply = z.infer<typeof helloReply>;

/** Validates the answer to a `hello`. Throws `ProtocolError`. */
export function parseHelloReply(value: unknown): HelloReply {
  return parseIn(
    helloReply,
    helloReplyTypes,
    value,
    "server",
    (type) => `expected welcome, got ${type}`,
  );
}

/** A first message as the server sends it. */
export type ServerHandshakeMessage = z.infer<typeof challenge> | z.infer<typeof welcome>;
