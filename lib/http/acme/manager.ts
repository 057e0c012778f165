/**
 * Automatic certificates over ACME (RFC 8555) with HTTP-01 challenges,
 * answered by the edge's plain listener.
 *
 * The server tells the manager which names its live apps hold ({@linkcode
 * AcmeManager.want}); only those are ever ordered, never a name a stranger
 * sends in a ClientHello. A name already covered by a certificate that is
 * not near its end (the operator's, or one issued before and kept in the
 * state folder) is left alone. A certificate is renewed once less than a
 * third of its lifetime is left (30 days of Let's Encrypt's 90). Each name
 * has at most one order in flight, and a failed order is retried with
 * exponential backoff (1 minute doubling to 6 hours), so a name that cannot
 * validate never hammers the CA's rate limits. Wildcard names cannot be
 * validated over HTTP-01 and are skipped.
 *
 * @module
 */

import "./env_guard.ts"; // before acme-client: see there
import * as acme from "acme-client";
import { getLogger } from "@logtape/logtape";
import { Backoff } from "../../util/backoff.ts";
import type { CertInfo, CertStore } from "../certs.ts";
import { AcmeStore } from "./store.ts";
import { forgetDirectory, trustForDirectory } from "./trust.ts";

/** Let's Encrypt's production directory: the default `acme.directory`. */
export const LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory";

/** Options for {@linkcode AcmeManager}. */
export interface AcmeOptions {
  /** The ACME directory URL. @default LETS_ENCRYPT */
  directory?: string;
  /** Contact address for the account (expiry notices). */
  email?: string;
  /** PEM CA(s) to trust for the directory's TLS (a private ACME server). */
  ca?: string;
  /** The server's state folder; certificates go to its `acme/`. */
  stateDir: string;
  /** Where issued certificates are put to use. */
  certs: CertStore;
  /**
   * Renew when less than this much of a certificate's life is left.
   * @default a third of its lifetime
   */
  renewWithinMs?: number;
  /** How often names are checked for renewal. @default 12 hours */
  checkEveryMs?: number;
  /** First retry delay after a failed order. @default 60000 */
  retryInitialMs?: number;
  /** Longest retry delay. @default 6 hours */
  retryMaxMs?: number;
  /** Called after each issued certificate (metrics, tests). */
  onIssued?: (name: string, info: CertInfo) => void;
  /** Called after each failed order, with the delay before the next try. */
  onFailed?: (name: string, error: Error, retryInMs: number) => void;
}

interface NameState {
  inFlight?: Promise<void>;
  backoff: Backoff;
  retryAt: number;
  timer?: ReturnType<typeof setTimeout>;
}

/** Orders, stores and renews certificates for the names it is told about. */
export class AcmeManager {
  #options: AcmeOptions;
  #store: AcmeStore;
  #client: Promise<acme.Client> | undefined;
  #challenges = new Map<string, string>();
  #wanted = new Set<string>();
  #names = new Map<string, NameState>();
  #check: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #log = getLogger(["burrow", "acme"]);

  constructor(options: AcmeOptions) {
    this.#options = options;
    this.#store = new AcmeStore(options.stateDir);
    if (options.ca !== undefined) trustForDirectory(this.#directory, options.ca);
  }

  get #directory(): string {
    return this.#options.directory ?? LETS_ENCRYPT;
  }

  /**
   * Loads the certificates kept in the state folder into the store and
   * starts the renewal checks.
   */
  async start(): Promise<void> {
    for (const [name, pair] of await this.#store.load()) {
      try {
        const info = this.#options.certs.add(pair);
        this.#log.debug(`loaded the certificate for ${name}, valid until ${iso(info.notAfter)}`);
      } catch (err) {
        this.#log.warn(`ignoring the stored certificate for ${name}: ${message(err)}`);
      }
    }
    this.#check = setInterval(() => this.#checkAll(), this.#options.checkEveryMs ?? 12 * 3600_000);
    Deno.unrefTimer(this.#check);
  }

  /** The key authorization for an HTTP-01 `token` under validation, if any. */
  challenge(token: string): string | undefined {
    return this.#challenges.get(token);
  }

  /** Names of live apps: each is ordered unless a certificate already covers it. */
  want(names: Iterable<string>): void {
    for (const name of names) {
      if (name.startsWith("*.")) {
        this.#log.debug(`no ACME certificate for ${name}: HTTP-01 cannot validate wildcards`);
        continue;
      }
      this.#wanted.add(name);
      this.#ensure(name);
    }
  }

  /** Names no longer held by a live app: they are not renewed any more. */
  unwant(names: Iterable<string>): void {
    for (const name of names) {
      this.#wanted.delete(name);
      const state = this.#names.get(name);
      if (state?.timer !== undefined) clearTimeout(state.timer);
    }
  }

  /** Resolves when no order is in flight (tests, clean shutdown). */
  async settled(): Promise<void> {
    await Promise.all([...this.#names.values()].map((s) => s.inFlight));
  }

  /** Stops the checks and retries; orders in flight finish on their own. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#check);
    for (const state of this.#names.values()) clearTimeout(state.timer);
    if (this.#options.ca !== undefined) forgetDirectory(this.#directory);
  }

  /** Whether `name` needs an order now: no certificate covers it, or it is due. */
  #due(name: string): boolean {
    const info = this.#options.certs.covering(name);
    if (!info) return true;
    const life = info.notAfter.getTime() - info.notBefore.getTime();
    const within = this.#options.renewWithinMs ?? life / 3;
    return Date.now() >= info.notAfter.getTime() - within;
  }

  #checkAll(): void {
    for (const name of this.#wanted) this.#ensure(name);
  }

  #ensure(name: string): void {
    if (this.#closed || !this.#wanted.has(name) || !this.#due(name)) return;
    let state = this.#names.get(name);
    if (!state) {
      state = {
        backoff: new Backoff({
          initialMs: this.#options.retryInitialMs ?? 60_000,
          maxMs: this.#options.retryMaxMs ?? 6 * 3600_000,
        }),
        retryAt: 0,
      };
      this.#names.set(name, state);
    }
    if (state.inFlight || Date.now() < state.retryAt) return;
    const current = state;
    current.inFlight = this.#order(name).then(
      () => {
        current.backoff.reset();
        current.retryAt = 0;
      },
      (err) => {
        const delay = current.backoff.next();
        current.retryAt = Date.now() + delay;
        this.#log.warn(
          `could not get a certificate for ${name}: ${message(err)}; trying again in ${
            Math.round(delay / 1000)
          } s`,
        );
        this.#options.onFailed?.(name, err instanceof Error ? err : new Error(message(err)), delay);
        clearTimeout(current.timer);
        current.timer = setTimeout(() => this.#ensure(name), delay);
        Deno.unrefTimer(current.timer);
      },
    ).finally(() => delete current.inFlight);
  }

  async #order(name: string): Promise<void> {
    const client = await this.#accountClient();
    const [key, csr] = await acme.crypto.createCsr(
      { altNames: [name] },
      await acme.crypto.createPrivateEcdsaKey(),
    );
    this.#log.info(`ordering a certificate for ${name} from ${this.#directory}`);
    const cert = await client.auto({
      csr,
      ...(this.#options.email !== undefined ? { email: this.#options.email } : {}),
      termsOfServiceAgreed: true,
      challengePriority: ["http-01"],
      // The CA reaches the name from outside; a check from here proves nothing.
      skipChallengeVerification: true,
      challengeCreateFn: (_authz, challenge, keyAuthorization) => {
        if (challenge.type !== "http-01") throw new Error(`no ${challenge.type} challenge here`);
        this.#challenges.set(challenge.token, keyAuthorization);
        return Promise.resolve();
      },
      challengeRemoveFn: (_authz, challenge) => {
        this.#challenges.delete(challenge.token);
        return Promise.resolve();
      },
    });
    const pair = { cert, key: key.toString() };
    const info = this.#options.certs.add(pair);
    await this.#store.save(name, pair);
    this.#log.info(`certificate for ${name} issued, valid until ${iso(info.notAfter)}`);
    this.#options.onIssued?.(name, info);
  }

  #accountClient(): Promise<acme.Client> {
    this.#client ??= (async () => {
      const accountKey = await this.#store.accountKey(async () =>
        (await acme.crypto.createPrivateEcdsaKey()).toString()
      );
      return new acme.Client({ directoryUrl: this.#directory, accountKey });
    })();
    // A failure (the directory unreachable) is retried on the next order.
    this.#client.catch(() => this.#client = undefined);
    return this.#client;
  }
}

function iso(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, "Z");
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
