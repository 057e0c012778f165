/**
 * The wire protocol, in one place. Every connection a client opens to the
 * server starts with length-prefixed JSON frames: a 4-byte big-endian length,
 * then that many bytes of UTF-8 JSON. Control connections stay framed for
 * their whole life; a work connection exchanges one `start` and one
 * `started` frame and then switches to raw bytes, which is why the reader
 * hands back whatever it read past the last frame.
 *
 * The server speaks first with a `challenge` carrying the protocol version
 * and a nonce, so a version mismatch is found before anything else and both
 * sides can say which one to upgrade. The `challenge` shape never changes
 * between versions for that reason.
 *
 * @module
 */

import { z } from "zod";
import { ProtocolError, type WireRefusalCode } from "../util/errors.ts";

/**
 * The wire protocol's version, bumped on any incompatible change to the
 * messages below. A client and a server of different versions do not
 * connect: the client fails with a `RefusedError` of code `version_mismatch`.
 *
 * @example
 * ```ts
 * import { PROTOCOL_VERSION, VERSION } from "@burrow/burrow";
 * console.log(`burrow ${VERSION} (protocol v${PROTOCOL_VERSION})`);
 * ```
 */
export const PROTOCOL_VERSION = 4; // v4: `start` names the user's and the public address
/**
 * The four bytes a client sends first on every connection, before it reads
 * the challenge (inside TLS when TLS is on). A plaintext client that meets a
 * TLS server thus gets an immediate TLS alert instead of waiting for a
 * challenge that never comes, and a plaintext server recognises a TLS client
 * by its ClientHello. Both sides can then say what to change.
 */
export const CLIENT_PREAMBLE: Uint8Array = new Uint8Array([0x42, 0x52, 0x57, 0x01]); // "BRW" 1
/** Hard cap on one frame's payload. Control messages are small; 64 KiB is generous. */
export const MAX_FRAME_BYTES = 64 * 1024;
/** Every first frame on a new connection must arrive within this bound. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;
/** Most connections a server lets sit in the handshake at once. */
export const MAX_HANDSHAKES = 512;
/** A user connection waits at most this long for a work connection. */
export const WORK_TIMEOUT_MS = 10_000;
/** How long an old session has to answer a ping before a new client takes its group over. */
export const TAKEOVER_PROBE_MS = 3_000;
/** Most apps one group may expose at once. */
export const MAX_APPS_PER_GROUP = 128;

/** Most `allow_from` ranges one app may list. */
export const MAX_ALLOW_FROM = 256;

/** Longest per-tunnel serve time, in seconds (setTimeout's limit). */
export const MAX_SERVE_SECONDS = 2_147_483;
/** Most services one discovery answer carries (it must also fit in a frame). */
export const MAX_SERVICES = 1024;
/** Most free-port ranges one answer carries; 4096 of them fit well inside a frame. */
export const MAX_FREE_RANGES = 4096;

/** Group and app names: lowercase, digits and dashes, 1 to 63 characters. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

const name = z.string().regex(NAME_PATTERN);
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const hex32 = z.string().regex(/^[0-9a-f]{32}$/);
const port = z.int().min(0).max(65535);
const requestId = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
const text = z.string().max(1024);
/** Free text shown to people: no control characters (no terminal escapes, no line breaks). */
const label = z.string().max(1024).regex(/^\P{Cc}*$/u);
const version = z.int().min(0).max(1_000_000);
/** An address as a socket reports it: an IP address (v6 without brackets) and a port. */
const netAddr = z.object({ hostname: z.string().max(64), port });

/** Every refusal code the server may send. */
export const REFUSAL_CODES = [
  "auth_failed",
  "version_mismatch",
  "group_live",
  "app_exists",
  "port_taken",
  "port_not_allowed",
  "no_free_port",
  "bad_request",
  "server_closing",
  "forbidden",
  "locked_out",
  "quota",
] as const satisfies readonly WireRefusalCode[];

/** Per-tunnel limits, as an `expose` carries them. */
const exposeLimits = z.object({
  // setTimeout's longest delay (2^31-1 ms, 24.8 days); longer ones would fire at once.
  maxServeSeconds: z.number().positive().max(MAX_SERVE_SECONDS).optional(),
  maxUsers: z.int().min(1).max(1e9).optional(),
  maxConnections: z.int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
});

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
    const result = exposeLimits.strict().safeParse(extras.limits);
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

// ---- server -> client ------------------------------------------------------

const serverMessage = z.discriminatedUnion("type", [
  /** First frame on every connection. Its shape is frozen across versions. */
  z.object({ type: z.literal("challenge"), version, server: text, nonce: hex64 }),
  /** The control connection is authenticated and owns the group. */
  z.object({
    type: z.literal("welcome"),
    session: hex32,
    heartbeatTimeout: z.number().positive().max(86_400),
  }),
  /** An app is live on a public port. Answers `expose` with the same id. */
  z.object({ type: z.literal("exposed"), id: requestId, app: name, port }),
  /**
   * An app's public port is closed. Answers `unexpose`, or comes unasked
   * (id 0) when the server closed it itself, e.g. because a limit was reached.
   */
  z.object({ type: z.literal("unexposed"), id: requestId, app: name, reason: text.optional() }),
  /** A refusal. With an id it answers that request; without, the session ends. */
  z.object({
    type: z.literal("refused"),
    id: requestId.optional(),
    code: z.enum(REFUSAL_CODES),
    message: text,
  }),
  z.object({ type: z.literal("ping"), seq: requestId }),
  z.object({ type: z.literal("pong"), seq: requestId }),
  /** Open this many extra work connections now (users are waiting). */
  z.object({ type: z.literal("want_work"), count: z.int().min(1).max(1024) }),
  /**
   * Free public ports as inclusive [from, to] ranges, the first
   * MAX_FREE_RANGES of them (`truncated` says more were left out). Answers
   * `free_ports`.
   */
  z.object({
    type: z.literal("free_ports"),
    id: requestId,
    ranges: z.array(z.tuple([port, port])).max(MAX_FREE_RANGES),
    truncated: z.boolean(),
  }),
  /**
   * On a work connection: join it to a user of this app. Raw bytes follow.
   * `source` is the user's address, `destination` the public address they
   * connected to (for a PROXY protocol header to the local service).
   */
  z.object({
    type: z.literal("start"),
    id: requestId,
    app: name,
    user: text,
    source: netAddr,
    destination: netAddr,
  }),
  /**
   * The user of work `id` reset or failed: close that join at once, both
   * ends. (A raw stream can only carry a FIN, which would read as a half-close.)
   */
  z.object({ type: z.literal("abort"), id: requestId }),
  /** Answers a `query` for services: every exposed app with live figures. */
  z.object({
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
    })).max(MAX_SERVICES),
    truncated: z.boolean(),
  }),
  /** The server is going away; reconnect later. */
  z.object({ type: z.literal("shutdown"), reason: text }),
]);

/** Messages the server sends, discriminated by `type`. */
export type ServerMessage = z.infer<typeof serverMessage>;

// ---- client -> server ------------------------------------------------------

const clientMessage = z.discriminatedUnion("type", [
  /** Opens a control connection for a group. */
  z.object({
    type: z.literal("hello"),
    version,
    client: text,
    group: name,
    runId: hex32,
    proof: hex64,
  }),
  /** Opens a work connection for a session. */
  z.object({ type: z.literal("work_hello"), version, session: hex32, proof: hex64 }),
  /** Put an app on a public port. `port` 0 lets the server pick, preferring `hint`. */
  z.object({
    type: z.literal("expose"),
    id: requestId,
    app: name,
    port,
    hint: port.optional(),
    /** Free text shown by discovery. */
    description: label.optional(),
    /** Optional limits; the server closes the tunnel (or turns users away) when one is reached. */
    limits: exposeLimits.optional(),
    /** Only users from these CIDR ranges may connect; the server checks each one. */
    allowFrom: z.array(z.string().max(64)).min(1).max(MAX_ALLOW_FROM).optional(),
  }),
  z.object({ type: z.literal("unexpose"), id: requestId, app: name }),
  z.object({ type: z.literal("free_ports"), id: requestId }),
  /**
   * A one-shot question instead of a hello (discovery): the server answers
   * with `services` or `free_ports` (id 0) and closes.
   */
  z.object({
    type: z.literal("query"),
    version,
    what: z.enum(["services", "free_ports"]),
    /**
     * The group whose token made the proof, for servers with per-group
     * credentials; the answer then covers that group only.
     */
    group: name.optional(),
    proof: hex64,
  }),
  z.object({ type: z.literal("ping"), seq: requestId }),
  z.object({ type: z.literal("pong"), seq: requestId }),
  /** The local app of work `id` reset or failed: close that user at once. */
  z.object({ type: z.literal("abort"), id: requestId }),
  /** On a work connection: the local app answered; raw bytes follow. */
  z.object({ type: z.literal("started") }),
  /** On a work connection: the local app could not be reached. */
  z.object({ type: z.literal("start_failed"), message: text }),
  /** The client is stopping: free the group now. */
  z.object({ type: z.literal("bye") }),
]);

/** Messages the client sends, discriminated by `type`. */
export type ClientMessage = z.infer<typeof clientMessage>;

/** Validates a decoded frame as a server message. Throws `ProtocolError`. */
export function parseServerMessage(value: unknown): ServerMessage {
  return check(serverMessage, value, "server");
}

/** Validates a decoded frame as a client message. Throws `ProtocolError`. */
export function parseClientMessage(value: unknown): ClientMessage {
  return check(clientMessage, value, "client");
}

function check<T>(schema: z.ZodType<T>, value: unknown, from: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new ProtocolError(`invalid ${from} message of type ${quotedType(value)}`);
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

/** The sentence both sides use when versions differ, naming the side to upgrade. */
export function versionMismatch(clientVersion: number, serverVersion: number): string {
  const older = clientVersion < serverVersion ? "burrow-client" : "burrow-server";
  return `protocol mismatch: client speaks v${clientVersion}, server speaks v${serverVersion}; upgrade ${older}`;
}

// ---- codec -----------------------------------------------------------------

/**
 * `promise`, or a `ProtocolError` with `message` once `ms` pass first. The
 * caller then closes the connection, which ends the abandoned operation; its
 * later failure is swallowed here.
 */
export function withDeadline<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ProtocolError(message)), ms);
  });
  promise.catch(() => {});
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The peer sent a TLS record (handshake or alert) where burrow expected its
 * own bytes: one side runs TLS and the other does not.
 */
export class TlsRecordError extends ProtocolError {
  /** Always `"TlsRecordError"`. */
  override name = "TlsRecordError";
}

/** A TLS record starts with content type 21 (alert) or 22 (handshake), then major version 3. */
function looksLikeTls(buf: Uint8Array, at: number): boolean {
  const type = buf[at];
  return (type === 0x15 || type === 0x16) && buf[at + 1] === 0x03;
}

/** Anything with Deno's `read` contract: fills part of `p`, or null at EOF. */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

/** Anything with Deno's `write` contract: writes part of `p`, returns how much. */
export interface ByteWriter {
  write(p: Uint8Array): Promise<number>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Encodes one message as a frame: length prefix and JSON. */
export function encodeFrame(message: ServerMessage | ClientMessage): Uint8Array {
  const body = encoder.encode(JSON.stringify(message));
  if (body.length > MAX_FRAME_BYTES) {
    throw new ProtocolError(
      `frame of ${body.length} bytes exceeds the ${MAX_FRAME_BYTES}-byte cap`,
    );
  }
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, 4);
  return frame;
}

/** Writes every byte of `p`, however many calls it takes. */
export async function writeAll(w: ByteWriter, p: Uint8Array): Promise<void> {
  let off = 0;
  while (off < p.length) off += await w.write(off === 0 ? p : p.subarray(off));
}

/**
 * Serialises frame writes on one connection, so that messages sent from
 * different tasks never interleave their bytes.
 */
export class FrameWriter {
  #w: ByteWriter;
  #tail: Promise<void> = Promise.resolve();
  constructor(w: ByteWriter) {
    this.#w = w;
  }
  /** Queues one message; resolves when it is written, rejects if the write fails. */
  send(message: ServerMessage | ClientMessage): Promise<void> {
    const frame = encodeFrame(message);
    const next = this.#tail.then(() => writeAll(this.#w, frame));
    this.#tail = next.catch(() => {});
    return next;
  }
}

/**
 * Reads frames from a byte stream without assuming one read is one frame.
 * Buffers at most one frame (plus what the last read brought), never more.
 */
export class FrameReader {
  #src: ByteReader;
  #buf = new Uint8Array(4096);
  #start = 0;
  #end = 0;

  constructor(src: ByteReader) {
    this.#src = src;
  }

  /**
   * The next frame's decoded JSON, or null on a clean end of stream between
   * frames. Throws `ProtocolError` on a truncated, oversize or non-JSON frame,
   * or when `timeoutMs` passes first (the caller then closes the connection).
   */
  read(timeoutMs?: number): Promise<unknown> {
    if (timeoutMs === undefined) return this.#read();
    return withDeadline(this.#read(), timeoutMs, `no complete frame within ${timeoutMs / 1000}s`);
  }

  /**
   * Reads the client's preamble ({@linkcode CLIENT_PREAMBLE}). Throws
   * `TlsRecordError` when the peer opened with a TLS ClientHello instead,
   * and `ProtocolError` for anything else that is not the preamble. The
   * caller bounds it in time, with the rest of the handshake.
   */
  async readPreamble(): Promise<void> {
    const ok = await this.#fill(CLIENT_PREAMBLE.length);
    if (!ok) throw new ProtocolError("closed before saying hello");
    if (looksLikeTls(this.#buf, this.#start)) {
      throw new TlsRecordError("the client speaks TLS");
    }
    for (let i = 0; i < CLIENT_PREAMBLE.length; i++) {
      if (this.#buf[this.#start + i] !== CLIENT_PREAMBLE[i]) {
        throw new ProtocolError("not a burrow client (bad preamble)");
      }
    }
    this.#start += CLIENT_PREAMBLE.length;
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  /** The bytes read past the last frame; the reader must not be used after. */
  takeBuffered(): Uint8Array {
    const rest = this.#buf.slice(this.#start, this.#end);
    this.#start = this.#end = 0;
    return rest;
  }

  async #read(): Promise<unknown> {
    if (!(await this.#fill(4))) return null;
    const view = new DataView(this.#buf.buffer, this.#buf.byteOffset + this.#start, 4);
    const length = view.getUint32(0);
    if (length > MAX_FRAME_BYTES && looksLikeTls(this.#buf, this.#start)) {
      throw new TlsRecordError("got a TLS record where a burrow frame was expected");
    }
    if (length > MAX_FRAME_BYTES) {
      throw new ProtocolError(`frame of ${length} bytes exceeds the ${MAX_FRAME_BYTES}-byte cap`);
    }
    if (!(await this.#fill(4 + length))) throw new ProtocolError("connection closed mid-frame");
    const body = this.#buf.subarray(this.#start + 4, this.#start + 4 + length);
    this.#start += 4 + length;
    let value: unknown;
    try {
      value = JSON.parse(decoder.decode(body));
    } catch {
      throw new ProtocolError("frame is not valid UTF-8 JSON");
    }
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return value;
  }

  /** Ensures `n` buffered bytes. False on EOF with nothing buffered; throws on EOF mid-way. */
  async #fill(n: number): Promise<boolean> {
    while (this.#end - this.#start < n) {
      if (this.#buf.length - this.#start < n) this.#compact(n);
      const got = await this.#src.read(this.#buf.subarray(this.#end));
      if (got === null) {
        if (this.#end === this.#start) return false;
        throw new ProtocolError("connection closed mid-frame");
      }
      this.#end += got;
    }
    return true;
  }

  /** Moves unread bytes to the front, growing the buffer when `n` bytes would not fit. */
  #compact(n: number): void {
    const unread = this.#buf.subarray(this.#start, this.#end);
    if (n > this.#buf.length) {
      const next = new Uint8Array(Math.max(n, Math.min(this.#buf.length * 2, MAX_FRAME_BYTES + 4)));
      next.set(unread);
      this.#buf = next;
    } else {
      this.#buf.copyWithin(0, this.#start, this.#end);
    }
    this.#end -= this.#start;
    this.#start = 0;
  }
}
