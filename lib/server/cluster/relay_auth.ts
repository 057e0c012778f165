/**
 * How two nodes prove to each other that they belong to one cluster, and
 * the header of each relayed user stream.
 *
 * The dialling node opens the first stream of a link with a **hello**
 * header: its name, the name of the node it means to reach, a fresh nonce,
 * the time, the identity its TLS connection trusts (the peer's CA
 * fingerprint, `public` for a certificate the system roots vouch for,
 * `none` without TLS), and an HMAC-SHA256 of all five under
 * `cluster.secret`. The identity binds the proof to the TLS channel: a man
 * in the middle that shows its own certificate gets a hello bound to that
 * one, which the real node refuses. The
 * accepting node checks it (in constant time, `crypto.subtle.verify`), and
 * answers on that stream with its own HMAC over the dialler's nonce, so the
 * dialler knows the peer holds the secret too. Nothing but a valid hello
 * within the first-frame deadline keeps a relay connection open.
 *
 * @module
 */

import { z } from "zod";
import type { Secret } from "../../util/secret.ts";
import { newNonce } from "../../util/secret.ts";

/** How far a hello's clock may be from ours. */
const MAX_SKEW_MS = 5 * 60_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The first stream's header on a relay link. */
export interface RelayHello {
  burrow_relay: 2;
  /** The dialling node. */
  node: string;
  /** The node it means to reach. */
  to: string;
  nonce: string;
  /** ms since the epoch, the dialler's clock. */
  ts: number;
  /** The TLS identity the dialler trusts: a CA fingerprint, `public` or `none`. */
  ca: string;
  /** Hex HMAC of the fields above. */
  mac: string;
}

/** The accepting node's answer, one JSON line on the first stream. */
export interface RelayAnswer {
  node: string;
  mac: string;
}

/** A relayed user: the stream's header. */
export interface RelayedUser {
  /** The public port the user connected to (0 for a web request). */
  port: number;
  /**
   * For a web app: the host name the user asked for. The stream then
   * carries the HTTP/1.1 requests of the relaying node's edge (an `http`
   * app) or the user's raw TLS connection (a `tls` app passed through).
   */
  host?: string | undefined;
  /** The user's own address. */
  from: { hostname: string; port: number };
  /** The address the user reached on the relaying node. */
  to: { hostname: string; port: number };
}

const helloSchema = z.strictObject({
  burrow_relay: z.literal(2),
  node: z.string().min(1).max(64),
  to: z.string().min(1).max(64),
  nonce: z.string().min(16).max(64),
  ts: z.number(),
  ca: z.string().regex(/^([0-9a-f]{64}|public|none)$/),
  mac: z.string().regex(/^[0-9a-f]{64}$/),
});

const answerSchema = z.strictObject({ node: z.string().min(1).max(64), mac: z.string() });

const addrSchema = z.strictObject({
  hostname: z.string().min(1).max(255),
  port: z.int().min(0).max(65535),
});

const userSchema = z.strictObject({
  port: z.int().min(0).max(65535),
  host: z.string().min(1).max(255).optional(),
  from: addrSchema,
  to: addrSchema,
}).refine((u) => u.port > 0 || u.host !== undefined, "a user of a port names the port");

/** The keys of one cluster secret. */
export class RelayKeys {
  #key: Promise<CryptoKey>;

  constructor(secret: Secret) {
    this.#key = crypto.subtle.importKey(
      "raw",
      encoder.encode(secret.reveal()),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
  }

  /** A hello from `node` to `to` over a channel that trusts `ca`, as header bytes. */
  async hello(
    node: string,
    to: string,
    ca: string,
  ): Promise<{ header: Uint8Array; nonce: string }> {
    const nonce = newNonce();
    const ts = Date.now();
    const mac = await this.#sign(`dial\n${node}\n${to}\n${nonce}\n${ts}\n${ca}`);
    const hello: RelayHello = { burrow_relay: 2, node, to, nonce, ts, ca, mac };
    return { header: encoder.encode(JSON.stringify(hello)), nonce };
  }

  /** The hello in `header` if it is valid and meant for `self`; undefined otherwise. */
  async checkHello(header: Uint8Array, self: string): Promise<RelayHello | undefined> {
    const hello = parseJson(helloSchema, header);
    if (hello === undefined || hello.to !== self) return undefined;
    if (Math.abs(Date.now() - hello.ts) > MAX_SKEW_MS) return undefined;
    const text = `dial\n${hello.node}\n${hello.to}\n${hello.nonce}\n${hello.ts}\n${hello.ca}`;
    return (await this.#verify(text, hello.mac)) ? hello : undefined;
  }

  /** The answer of `self` to a hello with `nonce`, as one line. */
  async answer(self: string, nonce: string): Promise<Uint8Array> {
    const mac = await this.#sign(`accept\n${self}\n${nonce}`);
    return encoder.encode(JSON.stringify({ node: self, mac } satisfies RelayAnswer) + "\n");
  }

  /** True when `line` proves that node `peer` answered our `nonce`. */
  async checkAnswer(line: Uint8Array, peer: string, nonce: string): Promise<boolean> {
    const answer = parseJson(answerSchema, line);
    if (answer === undefined || answer.node !== peer) return false;
    return await this.#verify(`accept\n${peer}\n${nonce}`, answer.mac);
  }

  /**
   * A tag of basic-auth credentials (`user:password`) under the secret: what
   * a web app's host claim carries, so that other nodes can check a user's
   * credentials without ever holding them.
   */
  authTag(credentials: string): Promise<string> {
    return this.#sign(`web-auth\n${credentials}`);
  }

  /** Whether `credentials` (`user:password`) are the ones `tag` was made of. */
  checkAuthTag(credentials: string, tag: string): Promise<boolean> {
    return this.#verify(`web-auth\n${credentials}`, tag);
  }

  async #sign(text: string): Promise<string> {
    const mac = await crypto.subtle.sign("HMAC", await this.#key, encoder.encode(text));
    return [...new Uint8Array(mac)].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  async #verify(text: string, hex: string): Promise<boolean> {
    if (!/^[0-9a-f]{64}$/.test(hex)) return false;
    const mac = new Uint8Array(32);
    for (let i = 0; i < 32; i++) mac[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
    return await crypto.subtle.verify("HMAC", await this.#key, mac, encoder.encode(text));
  }
}

/** The header of a relayed user's stream. */
export function userHeader(user: RelayedUser): Uint8Array {
  return encoder.encode(JSON.stringify(user));
}

/** A relayed user's header, or undefined when it is not one. */
export function parseUserHeader(header: Uint8Array): RelayedUser | undefined {
  return parseJson(userSchema, header);
}

function parseJson<T>(schema: z.ZodType<T>, bytes: Uint8Array): T | undefined {
  try {
    const parsed = schema.safeParse(JSON.parse(decoder.decode(bytes)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether a (valid) hello was made over this node's own TLS channel:
 * `identity` is this node's CA fingerprint (64 hex digits), or undefined
 * without TLS. A hello bound to another CA came through a man in the middle
 * (or a node that trusted another certificate for this address).
 */
export function boundTo(hello: RelayHello, identity: string | undefined): boolean {
  if (identity === undefined) return hello.ca === "none";
  return hello.ca === identity || hello.ca === "public";
}
