/**
 * HTTP basic auth checked in constant time: the expected `user:password` is
 * kept only as an HMAC under a random key, and each attempt is verified with
 * `crypto.subtle.verify`, so neither the comparison's time nor its length
 * tells how much of a guess was right.
 *
 * @module
 */

import type { Secret } from "./secret.ts";

const encoder = new TextEncoder();

/**
 * One set of credentials.
 *
 * @example
 * ```ts
 * import { BasicAuth } from "./basic_auth.ts";
 * import { Secret } from "./secret.ts";
 * const auth = new BasicAuth("alice", new Secret("wonderland"));
 * await auth.check(`Basic ${btoa("alice:wonderland")}`); // true
 * ```
 */
export class BasicAuth {
  #ready: Promise<{ key: CryptoKey; expected: ArrayBuffer }>;

  constructor(user: string, password: Secret) {
    this.#ready = (async () => {
      const key = await crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, [
        "sign",
        "verify",
      ]);
      const expected = await crypto.subtle.sign(
        "HMAC",
        key,
        encoder.encode(`${user}:${password.reveal()}`),
      );
      return { key, expected };
    })();
  }

  /** Whether an `Authorization` header value carries these credentials. */
  async check(header: string | null | undefined): Promise<boolean> {
    const m = header == null ? null : /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!m) return false;
    let given: Uint8Array<ArrayBuffer>;
    try {
      given = Uint8Array.from(atob(m[1] as string), (c) => c.charCodeAt(0));
    } catch {
      return false;
    }
    const { key, expected } = await this.#ready;
    return await crypto.subtle.verify("HMAC", key, expected, given);
  }
}
