/**
 * Server hooks: callbacks a host program passes to `startServer` to allow or
 * refuse (a client's group, an app's port, a user's connection) and to
 * observe (every closed user connection). A hook that refuses gives the
 * client a clean refusal with the hook's reason, code `forbidden`.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { errorMessage } from "../util/errors.ts";
import { withDeadline } from "../protocol/protocol.ts";

/** A deciding hook that has not answered within this bound refuses. */
export const HOOK_TIMEOUT_MS = 5_000;

/**
 * What a deciding hook returns: nothing or `true` allows; `false` refuses;
 * a string refuses with that string as the reason the client is told.
 */
export type HookDecision = void | boolean | string;

/** A client asking to register a group, as {@linkcode ServerHooks.onAuth} sees it. */
export interface AuthInfo {
  /** The group the client asks to register. */
  group: string;
  /** The client's address as the server sees it, `host:port`. */
  addr: string;
  /** The client's software version. */
  clientVersion: string;
}

/** A client asking to expose an app, as {@linkcode ServerHooks.onExpose} sees it. */
export interface ExposeInfo {
  /** The client's group. */
  group: string;
  /** The app's name, unique within the group. */
  app: string;
  /** The port asked for; 0 lets the server pick. */
  port: number;
  /** The client's address as the server sees it, `host:port`. */
  addr: string;
}

/** A user connecting to an app's public port, as {@linkcode ServerHooks.onUserConnect} sees it. */
export interface UserConnectInfo {
  /** The group that exposes the app. */
  group: string;
  /** The app the user connected to. */
  app: string;
  /** The app's public port. */
  port: number;
  /** The user's address, `host:port` (for allow lists). */
  user: string;
}

/** A user connection that has ended, as {@linkcode ServerHooks.onClose} sees it. */
export interface CloseInfo extends UserConnectInfo {
  /** Bytes from the user to the app. */
  bytesIn: number;
  /** Bytes from the app to the user. */
  bytesOut: number;
  /** How long the connection lasted, in milliseconds. */
  durationMs: number;
  /** Why it failed, if it did not end cleanly. */
  error?: string;
}

/**
 * Hooks accepted by `startServer`, as part of its options. Every hook is
 * optional. A deciding hook that throws refuses (and the error is logged);
 * an observing hook that throws is logged and otherwise ignored.
 *
 * @example
 * ```ts
 * import { type ServerHooks, startServer } from "@burrow/burrow";
 * const hooks: ServerHooks = {
 *   onAuth: ({ group }) => group.startsWith("lab-") || `group "${group}" is not allowed here`,
 *   onExpose: ({ port }) => port === 0 || port >= 20000,
 *   onClose: ({ group, app, bytesIn, bytesOut }) => {
 *     console.log(`${group}/${app}: ${bytesIn} bytes in, ${bytesOut} bytes out`);
 *   },
 * };
 * const server = await startServer({ bind: "127.0.0.1:0", token: "s3cret", ...hooks });
 * await server.close();
 * ```
 */
export interface ServerHooks {
  /** Allow or refuse a group registration (after the token checked out). */
  onAuth?: (info: AuthInfo) => HookDecision | Promise<HookDecision>;
  /** Allow or refuse exposing an app. */
  onExpose?: (info: ExposeInfo) => HookDecision | Promise<HookDecision>;
  /**
   * Allow or refuse a user connection, before any byte reaches the client.
   * A refused user's connection is closed without an answer, and
   * `onClose` is not called for it.
   */
  onUserConnect?: (info: UserConnectInfo) => HookDecision | Promise<HookDecision>;
  /** Observes every user connection that ended. */
  onClose?: (info: CloseInfo) => unknown;
}

/**
 * Asks a deciding hook. Returns undefined to allow, or the refusal reason.
 * A hook that throws refuses (and is logged): failing closed is the safe side.
 */
export async function consult<T>(
  name: string,
  hook: ((info: T) => HookDecision | Promise<HookDecision>) | undefined,
  info: T,
  log: Logger,
): Promise<string | undefined> {
  if (!hook) return undefined;
  let decision: HookDecision;
  try {
    decision = await withDeadline(
      Promise.resolve(hook(info)),
      HOOK_TIMEOUT_MS,
      `no answer within ${HOOK_TIMEOUT_MS / 1000}s`,
    );
  } catch (err) {
    log.error(`${name} hook failed: ${errorMessage(err)}`);
    return `refused by the server's ${name} hook`;
  }
  if (decision === undefined || decision === true) return undefined;
  return typeof decision === "string" && decision !== ""
    ? decision
    : `refused by the server's ${name} hook`;
}

/** Calls an observing hook; a throwing one is logged, never fatal. */
export function observe<T>(
  name: string,
  hook: ((info: T) => unknown) | undefined,
  info: T,
  log: Logger,
): void {
  if (!hook) return;
  const failed = (err: unknown) => log.error(`${name} hook failed: ${errorMessage(err)}`);
  try {
    // An async hook's rejection must not become an unhandled one (that would end the process).
    Promise.resolve(hook(info)).catch(failed);
  } catch (err) {
    failed(err);
  }
}
