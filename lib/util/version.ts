/**
 * burrow's release version, read from deno.json so there is one source.
 *
 * @module
 */

import meta from "../../deno.json" with { type: "json" };

/**
 * The version of this build, e.g. `0.1.0`. Clients send it when they
 * register; the server passes it to `onAuth` as `clientVersion`.
 *
 * @example
 * ```ts
 * import { VERSION } from "@burrow/burrow";
 * console.log(`burrow ${VERSION}`);
 * ```
 */
export const VERSION: string = meta.version;
