/**
 * Typed expected failures. Each becomes one clear line for the user; anything
 * else is unexpected and keeps its stack.
 *
 * @module
 */

/** Codes the server gives when it refuses a client. Refusals are final. */
export type RefusalCode =
  | "auth_failed"
  | "version_mismatch"
  | "group_live"
  | "app_exists"
  | "port_taken"
  | "port_not_allowed"
  | "no_free_port"
  | "bad_request"
  | "server_closing"
  | "forbidden";

/** A usage or configuration problem: exit code 2. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** The server cannot bind its control listener or public host: exit code 1. */
export class ListenError extends Error {
  override name = "ListenError";
}

/** The peer broke the wire protocol (garbage, oversize frame, timeout). */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

/** The server refused a request. `code` says why; the message is for people. */
export class RefusedError extends Error {
  override name = "RefusedError";
  readonly code: RefusalCode;
  constructor(code: RefusalCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** The message of any thrown value, for one-line logs of expected failures. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
