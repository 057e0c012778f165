/**
 * The wire protocol's version and the sentence both sides print when two
 * versions meet. The server speaks first with a `challenge` carrying its
 * version, whose shape never changes between versions, so a mismatch is
 * found before anything else and both sides can say which one to upgrade.
 *
 * @module
 */

/**
 * The wire protocol's version, bumped on any incompatible change to the
 * messages. A client and a server of different versions do not connect: the
 * client fails with a `RefusedError` of code `version_mismatch`.
 *
 * @example
 * ```ts
 * import { PROTOCOL_VERSION, VERSION } from "@burrow/burrow";
 * console.log(`burrow ${VERSION} (protocol v${PROTOCOL_VERSION})`);
 * ```
 */
export const PROTOCOL_VERSION = 7; // v7: udp apps (expose.udp, udp_flow work streams); v6: work connections carry mux sessions, one stream per user (v5: shared groups, web apps)

/** The sentence both sides use when versions differ, naming the side to upgrade. */
export function versionMismatch(clientVersion: number, serverVersion: number): string {
  const older = clientVersion < serverVersion ? "burrow-client" : "burrow-server";
  return `protocol mismatch: client speaks v${clientVersion}, server speaks v${serverVersion}; upgrade ${older}`;
}
