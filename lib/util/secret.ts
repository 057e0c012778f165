/**
 * Secrets and the challenge-response that proves knowledge of one without
 * sending it. A `Secret` prints as `***` however it is logged or serialised;
 * only `reveal()` gives the value, and only this module's HMAC calls it.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * A token whose printed, inspected and JSON forms are masked. Options that
 * take a token accept a plain string or a `Secret`; wrap it early so that no
 * log line or config dump can show it.
 *
 * @example
 * ```ts
 * import { Secret, startClient } from "@burrow/burrow";
 * const token = new Secret(Deno.env.get("BURROW_TOKEN") ?? "");
 * console.log(`token: ${token}`); // token: ***
 * const client = await startClient({ server: "127.0.0.1:7700", token, group: "lab" });
 * await client.close();
 * ```
 */
export class Secret {
  #value: string;
  /**
   * Wraps a token.
   *
   * @param value The raw secret.
   */
  constructor(value: string) {
    this.#value = value;
  }
  /** The raw value. Call only where the secret is used, never to print it. */
  reveal(): string {
    return this.#value;
  }
  /** Always `***`, so string interpolation cannot leak the value. */
  toString(): string {
    return "***";
  }
  /** Always `***`, so `JSON.stringify` cannot leak the value. */
  toJSON(): string {
    return "***";
  }
  /** `Secret(***)`, what `console.log` and `Deno.inspect` show. */
  [Symbol.for("Deno.customInspect")](): string {
    return "Secret(***)";
  }
}

/** A fresh random nonce, 32 bytes as lowercase hex. */
export function newNonce(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(32)));
}

/** A random id (16 bytes hex) for sessions and client runs. */
export function newId(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(16)));
}

/**
 * HMAC-SHA256 of `parts` (joined by a NUL byte) keyed by the secret, as hex.
 * The parts bind a proof to its purpose: the nonce, the kind of connection and
 * the group or session it is for, so a proof cannot be replayed elsewhere.
 */
export async function prove(secret: Secret, ...parts: string[]): Promise<string> {
  const key = await hmacKey(secret);
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(parts.join("\0")));
  return toHex(new Uint8Array(mac));
}

/**
 * Checks a proof made by `prove` with the same parts. The comparison is
 * `crypto.subtle.verify`, which is constant time, so a wrong proof leaks
 * nothing about where it differs.
 */
export async function verifyProof(
  secret: Secret,
  proof: string,
  ...parts: string[]
): Promise<boolean> {
  const mac = fromHex(proof);
  if (mac === undefined || mac.length !== 32) return false;
  const key = await hmacKey(secret);
  return await crypto.subtle.verify("HMAC", key, mac, encoder.encode(parts.join("\0")));
}

/**
 * Imported keys, one per secret object: importing costs about as much as the
 * HMAC itself, and every work connection needs one. Weakly held, so a
 * replaced secret's key goes with it.
 */
const keys = new WeakMap<Secret, Promise<CryptoKey>>();

function hmacKey(secret: Secret): Promise<CryptoKey> {
  let key = keys.get(secret);
  if (!key) {
    key = importKey(secret);
    keys.set(secret, key);
  }
  return key;
}

function importKey(secret: Secret): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    encoder.encode(secret.reveal()),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

function fromHex(hex: string): Uint8Array<ArrayBuffer> | undefined {
  if (hex.length % 2 !== 0 || !/^[0-9a-f]*$/.test(hex)) return undefined;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/**
 * Values shorter than this are masked only where they stand alone: a
 * one-letter token would otherwise mask every such letter of the message.
 */
const MASK_ANYWHERE_FROM = 6;

/**
 * Replaces each secret value in `text` by its label, for messages that quote
 * what a user typed: a token pasted under the wrong key or flag must not be
 * printed back. A value of 6 characters or more is masked wherever it occurs,
 * even glued to other text (`x${BURROW_TOKEN}` still holds the secret); a
 * shorter one only as a whole word. Longer values go first, so one that
 * contains another is masked whole.
 */
export function maskSecrets(
  text: string,
  secrets: Iterable<readonly [value: string, label: string]>,
): string {
  let out = text;
  const longestFirst = [...secrets].sort(([a], [b]) => b.length - a.length);
  for (const [value, label] of longestFirst) {
    if (value.length === 0) continue;
    const escaped = value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const pattern = value.length >= MASK_ANYWHERE_FROM
      ? escaped
      : `(?<![A-Za-z0-9_])${escaped}(?![A-Za-z0-9_])`;
    out = out.replace(new RegExp(pattern, "g"), () => label); // a function: `$&` stays text
  }
  return out;
}
