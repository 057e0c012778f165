/**
 * Typed expected failures. Each becomes one clear line for the user; anything
 * else is unexpected and keeps its stack.
 *
 * @module
 */

/**
 * Every code the server may give when it refuses a client: the one list the
 * wire schema, {@linkcode RefusedError} and the refusal metrics derive from.
 *
 * @example
 * ```ts
 * import { REFUSAL_CODES } from "@burrow/burrow";
 * console.log(REFUSAL_CODES.includes("auth_failed")); // true
 * ```
 */
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
  "replica_mismatch",
  "host_taken",
  "host_not_allowed",
] as const;

/** Codes the server gives when it refuses a client. Refusals are final. */
export type WireRefusalCode = typeof REFUSAL_CODES[number];

/**
 * Why a client gave up for good: a server's refusal, or the client's own
 * finding that TLS settings do not match (`tls_mismatch`) or that the server
 * is not the one it trusts (`identity_changed`).
 */
export type RefusalCode = WireRefusalCode | "tls_mismatch" | "identity_changed";

/**
 * A usage or configuration problem: exit code 2. `startServer`,
 * `startClient`, `expose` and discovery throw it for bad options.
 *
 * @example
 * ```ts
 * import { ConfigError, startClient } from "@burrow/burrow";
 * try {
 *   await startClient({ server: "no-port", token: "s3cret", group: "lab" });
 * } catch (err) {
 *   if (!(err instanceof ConfigError)) throw err;
 *   console.error(err.message); // server: expected HOST:PORT, got "no-port"
 * }
 * ```
 */
export class ConfigError extends Error {
  /** Always `"ConfigError"`. */
  override name = "ConfigError";
}

/** The server cannot bind its control listener or public host: exit code 1. */
export class ListenError extends Error {
  /** Always `"ListenError"`. */
  override name = "ListenError";
}

/**
 * The peer broke the wire protocol (garbage, oversize frame, timeout), or
 * answered with a message that makes no sense at that point.
 *
 * @example
 * ```ts
 * import { discoverServices, ProtocolError } from "@burrow/burrow";
 * try {
 *   await discoverServices({ server: "127.0.0.1:7700", token: "s3cret" });
 * } catch (err) {
 *   if (err instanceof ProtocolError) console.error(`not a burrow server? ${err.message}`);
 *   else throw err;
 * }
 * ```
 */
export class ProtocolError extends Error {
  /** Always `"ProtocolError"`. */
  override name = "ProtocolError";
}

/**
 * The server refused a request. `code` says why; the message is for people.
 * Refusals are final: the client does not retry them.
 *
 * @example
 * ```ts
 * import { RefusedError, startClient } from "@burrow/burrow";
 * try {
 *   await startClient({ server: "127.0.0.1:7700", token: "wrong", group: "lab" });
 * } catch (err) {
 *   if (err instanceof RefusedError && err.code === "auth_failed") console.error("bad token");
 *   else throw err;
 * }
 * ```
 */
export class RefusedError extends Error {
  /** Always `"RefusedError"`. */
  override name = "RefusedError";
  /** Why the server refused, for programs to act on. */
  readonly code: RefusalCode;
  /**
   * Makes a refusal with its machine-readable `code` and a message for people.
   *
   * @param code Why the request was refused.
   * @param message What to tell the user, in plain words.
   */
  constructor(code: RefusalCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** The message of any thrown value, for one-line logs of expected failures. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The line the programs print for a final refusal, saying whose finding it is. */
export function refusalLine(err: RefusedError): string {
  const own = err.code === "tls_mismatch" || err.code === "identity_changed";
  return `${own ? "" : "refused by the server: "}${err.message} (${err.code})`;
}
