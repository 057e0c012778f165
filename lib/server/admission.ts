/**
 * Who gets in: the login policy of one server. A first message's proof is
 * checked against its group's credential (or the shared token); a source
 * that keeps failing is slowed down and then locked out (`SourceGuard`).
 * A proven `hello` must then pass the host's `onAuth` hook, take its group
 * over from an older session (the same client reconnecting, or one that no
 * longer answers a ping), fit within `limits.max_groups`, and still hold a
 * credential that was not revoked while it waited.
 *
 * Every decision is a {@linkcode Refusal} or a go-ahead; the router sends
 * the refusal.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import type { ServerLimits } from "../config/limits.ts";
import type { WireRefusalCode } from "../util/errors.ts";
import type { Hello, Query, WorkHello } from "../protocol/protocol.ts";
import { type Secret, verifyProof } from "../util/secret.ts";
import { lockedOutMessage, type SourceGuard } from "../util/source_guard.ts";
import type { RareLog } from "../util/rare_log.ts";
import { consult, type ServerHooks } from "./hooks.ts";
import type { Credential, Credentials } from "./users.ts";

/** How long an old session has to answer a ping before a new client takes its group over. */
export const TAKEOVER_PROBE_MS = 3_000;

/** Why a connection is turned away, as the refusal says it. */
export interface Refusal {
  code: WireRefusalCode;
  message: string;
}

/** What admission needs of a live session to decide a takeover (`ServerSession` fits). */
export interface Incumbent {
  readonly runId: string;
  readonly clientAddr: string;
  /** Resolves true if the client answers a ping within `timeoutMs`. */
  probe(timeoutMs: number): Promise<boolean>;
  end(reason: string): void;
  /** Resolves once an ended session has released everything (its ports are free again). */
  readonly done: Promise<void>;
}

/** How long a takeover waits for the old session's ports to be really free. */
const RELEASE_WAIT_MS = 2_000;

/** What admission reads of the server: its credentials, groups and state. */
export interface AdmissionDeps {
  guard: SourceGuard;
  limits: ServerLimits;
  log: Logger;
  rare: RareLog;
  hooks: Pick<ServerHooks, "onAuth">;
  /** Undefined without authentication; replaced on reload, so read it each time. */
  credentials(): Credentials | undefined;
  /** The shared token, if there is one. */
  token: Secret | undefined;
  /** The live sessions of a group (several for a shared group), if any. */
  live(group: string): { shared: boolean; members: readonly Incumbent[] } | undefined;
  /** How many groups are live. */
  liveGroups(): number;
  /** True once the server is shutting down. */
  closing(): boolean;
}

/** A proven and admitted `hello`: the credential it proved (none without authentication). */
export interface Admitted {
  credential: Credential | undefined;
}

/** The login policy of one server. */
export class Admission {
  #d: AdmissionDeps;

  constructor(deps: AdmissionDeps) {
    this.#d = deps;
  }

  /**
   * Checks a hello's proof. On failure the refusal comes after a delay that
   * grows with the source's failures, and a source past its limit is
   * locked out. The token the client proved it knows (undefined without
   * authentication), or the refusal.
   */
  async login(
    source: string,
    from: string,
    nonce: string,
    hello: Hello,
  ): Promise<{ proven: Secret | undefined } | Refusal> {
    const credentials = this.#d.credentials();
    const credential = credentials?.lookup(hello.group);
    const refusal = await this.#check(
      source,
      from,
      `a login as group ${hello.group}`,
      () =>
        credentials === undefined ||
        (credential !== undefined &&
          verifyProof(credential.token, hello.proof, nonce, "control", hello.group, hello.runId)),
    );
    return refusal ?? { proven: credential?.token };
  }

  /**
   * Checks a work connection's proof against its session's token. A wrong
   * one counts as a failed login. True when proven.
   */
  async work(
    source: string,
    from: string,
    nonce: string,
    hello: WorkHello,
    token: Secret,
  ): Promise<boolean> {
    const ok = this.#d.credentials() === undefined ||
      await verifyProof(token, hello.proof, nonce, "work", hello.session);
    if (!ok) await this.#failed(source, from, "a work connection with a wrong proof");
    return ok;
  }

  /**
   * Checks a discovery query's proof. With per-group credentials a query
   * names its group; the shared token's query names none. The credential it
   * proved (undefined without authentication or for the shared token), or
   * the refusal.
   */
  async query(
    source: string,
    from: string,
    nonce: string,
    query: Query,
  ): Promise<{ credential: Credential | undefined } | Refusal> {
    const credentials = this.#d.credentials();
    const credential = query.group === undefined
      ? (this.#d.token === undefined ? undefined : { token: this.#d.token })
      : credentials?.lookup(query.group);
    const refusal = await this.#check(
      source,
      from,
      `a ${query.what} query`,
      () =>
        credentials === undefined ||
        (credential !== undefined &&
          verifyProof(credential.token, query.proof, nonce, "query", query.group ?? "")),
    );
    return refusal ?? { credential };
  }

  /**
   * Decides whether a proven hello may own its group now: the `onAuth`
   * hook, a takeover of the live session, the group cap, and a last look at
   * the credential (the users file may have changed while this waited).
   */
  async register(
    hello: Hello,
    from: string,
    proven: Secret | undefined,
  ): Promise<Admitted | Refusal> {
    const forbidden = await consult("onAuth", this.#d.hooks.onAuth, {
      group: hello.group,
      addr: from,
      clientVersion: hello.client,
    }, this.#d.log);
    if (forbidden !== undefined) return { code: "forbidden", message: forbidden };
    const shared = hello.shared === true;
    const live = this.#d.live(hello.group);
    if (live) {
      // The same client reconnecting replaces its own old session (in a
      // shared group: its own replica, not the others).
      const same = live.members.find((m) => m.runId === hello.runId);
      const ended: Incumbent[] = [];
      if (same) {
        same.end("replaced by the same client reconnecting");
        ended.push(same);
      } else if (!shared || !live.shared) {
        const members = [...live.members];
        const answers = await Promise.all(members.map((m) => m.probe(TAKEOVER_PROBE_MS)));
        const alive = members.find((_, i) => answers[i]);
        if (alive !== undefined) {
          return { code: "group_live", message: groupLive(hello.group, live, shared, alive) };
        }
        for (const m of members) {
          m.end(`taken over by ${from}: the old client did not answer a ping`);
          ended.push(m);
        }
      }
      // The new session asks for the same ports at once: wait (bounded) until the old
      // listeners are really closed, or its expose would meet "address in use".
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(ended.map((m) => m.done)),
        new Promise((resolve) => timer = setTimeout(resolve, RELEASE_WAIT_MS)),
      ]);
      clearTimeout(timer);
    }
    if (this.#d.closing()) {
      return { code: "server_closing", message: "the server is shutting down" };
    }
    const now = this.#d.live(hello.group);
    if (now && !(shared && now.shared)) {
      return { code: "group_live", message: `group ${hello.group} is live from another client` };
    }
    const { maxGroups } = this.#d.limits;
    if (now === undefined && this.#d.liveGroups() >= maxGroups) {
      this.#d.rare.warn("max-groups", `${maxGroups} groups are live (limits.max_groups)`);
      return { code: "quota", message: `the server has its limit of ${maxGroups} groups live` };
    }
    const credentials = this.#d.credentials();
    const credential = credentials?.lookup(hello.group);
    if (
      credentials !== undefined &&
      (credential === undefined || proven === undefined ||
        // A local comparison of two values this server holds; nothing remote can time it.
        credential.token.reveal() !== proven.reveal())
    ) {
      // The users file changed while this client was in its handshake (the
      // hook and the takeover probe above wait): what it proved is revoked.
      return { code: "auth_failed", message: "authentication failed: wrong token" };
    }
    return { credential };
  }

  /**
   * Decides a login attempt from `source`: a locked-out source is refused
   * before `check` runs; a failed check is counted, answered after the delay
   * it earns, and may lock the source out. Undefined when admitted.
   */
  async #check(
    source: string,
    from: string,
    what: string,
    check: () => boolean | Promise<boolean>,
  ): Promise<Refusal | undefined> {
    const locked = this.#d.guard.lockedFor(source);
    if (locked > 0) return { code: "locked_out", message: lockedOutMessage(source, locked) };
    if (await check()) return undefined;
    return await this.#failed(source, from, what)
      ? { code: "locked_out", message: lockedOutMessage(source, this.#d.limits.lockoutSeconds) }
      : { code: "auth_failed", message: "authentication failed: wrong token" };
  }

  /**
   * Counts a failed login from `source` and waits the delay it earns.
   * True when this failure locked the source out.
   */
  async #failed(source: string, from: string, what: string): Promise<boolean> {
    const { delayMs, lockedOut } = this.#d.guard.failed(source);
    if (lockedOut) {
      this.#d.log.warn(
        `locking out ${source} for ${this.#d.limits.lockoutSeconds}s after ` +
          `${this.#d.limits.authFailures} failed logins (limits.auth_failures; latest: ${what} from ${from})`,
      );
    }
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    return lockedOut;
  }
}

/** Why a client cannot join a live group, and what to change. */
function groupLive(
  group: string,
  live: { shared: boolean; members: readonly Incumbent[] },
  shared: boolean,
  alive: Incumbent,
): string {
  if (live.shared) {
    return `group ${group} is shared by ${live.members.length} client(s) (${alive.clientAddr}), ` +
      `but this client does not share it: set shared: true in its group file`;
  }
  if (shared) {
    return `group ${group} is live from a client that does not share it (${alive.clientAddr}): ` +
      `set shared: true in every group file of this group`;
  }
  return `group ${group} is live from another client (${alive.clientAddr})`;
}

/** True for a refusal, false for a go-ahead. */
export function isRefusal<T extends object>(decision: T | Refusal): decision is Refusal {
  return "code" in decision && "message" in decision;
}
