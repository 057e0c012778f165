/**
 * The cluster store on Redis, through node-redis (`@redis/client`). Two
 * connections: one for commands, one subscribed to the feed. Each store
 * operation is one EVALSHA of a script from `redis_scripts.ts`, so it is
 * atomic; replies are JSON and carry the store's epoch.
 *
 * Connection loss is a state, not an exception: operations answer
 * `unreachable` at once (no offline queue, so nothing piles up and nothing
 * runs late), the client reconnects with backoff, and when the feed is live
 * again listeners hear `feed_ready` and take a snapshot. Every message about
 * the store masks its credentials.
 *
 * @module
 */

import { createClient, ErrorReply } from "@redis/client";
import { getLogger } from "@logtape/logtape";
import { Backoff, type BackoffOptions, sleep } from "../util/backoff.ts";
import { newId } from "../util/secret.ts";
import { feedChannel, type ScriptName, SCRIPTS, storeKeys } from "./redis_scripts.ts";
import {
  type Claim,
  type ClaimKey,
  type ClaimRequest,
  type ClaimResult,
  type ClusterStore,
  type FeedListener,
  type FeedMessage,
  type HeldKey,
  type JoinResult,
  type LookupResult,
  type LostKey,
  type NodeInfo,
  type NodeRecord,
  normalKey,
  type Owner,
  type ReapResult,
  type ReleaseResult,
  type RenewResult,
  type SnapshotResult,
  type StoreEvent,
  type StoreState,
  type Unreachable,
} from "./store.ts";
import { maskStore, parseStoreUrl, type StoreUrl } from "./store_url.ts";

/** Options for {@linkcode RedisStore}. */
export interface RedisStoreOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://`. */
  url: string;
  /** Prefix of every key and of the feed channel, so clusters can share a Redis. @default "burrow" */
  prefix?: string;
  /** An operation without a reply by then answers `unreachable`. @default 2000 */
  commandTimeoutMs?: number;
  /** Reconnect delays. @default { initialMs: 100, maxMs: 5000 } */
  reconnect?: BackoffOptions;
  /** PEM of the CA that signed the store's certificate, for `rediss://` with a private CA. */
  ca?: string;
}

type Client = ReturnType<typeof createClient>;
type Reply = Record<string, unknown> & { epoch: string };

/** How long `feed_ready` waits for its own marker to come back before trying again. */
const MARK_TIMEOUT_MS = 2000;

/**
 * A {@linkcode ClusterStore} on one Redis (or a Redis reached through a
 * proxy or Sentinel-managed address). Construction returns at once and
 * connects in the background; see {@linkcode RedisStore.connected}.
 *
 * @example
 * ```ts
 * import { RedisStore } from "./redis_store.ts";
 * const store = new RedisStore({ url: "redis://127.0.0.1:6379" });
 * await store.connected();
 * const owner = { node: "a", session: "s1", runId: "r1" };
 * const result = await store.claim([{ kind: "port", key: "20001" }], owner, 15_000);
 * if (result.ok) console.log(`port 20001 is ours, token ${result.claims[0]?.token}`);
 * await store.close();
 * ```
 */
export class RedisStore implements ClusterStore {
  readonly #url: StoreUrl;
  readonly #keys: string[];
  readonly #channel: string;
  readonly #timeoutMs: number;
  readonly #client: Client;
  readonly #sub: Client;
  readonly #log = getLogger(["burrow", "cluster", "store"]);
  readonly #listeners = new Set<FeedListener>();
  readonly #shas = new Map<ScriptName, Promise<string>>();
  readonly #marks = new Map<string, () => void>();
  readonly #closer = new AbortController();
  #state: StoreState = { status: "connecting", since: Date.now() };
  #epoch: string | undefined;
  #subscribed = false;
  #confirming = false;
  #feedWanted = false;

  /**
   * Starts connecting to the store.
   *
   * @throws {ConfigError} for a URL that is not a store URL.
   */
  constructor(options: RedisStoreOptions) {
    this.#url = parseStoreUrl(options.url);
    const prefix = options.prefix ?? "burrow";
    this.#keys = storeKeys(prefix);
    this.#channel = feedChannel(prefix);
    this.#timeoutMs = options.commandTimeoutMs ?? 2000;
    const socket = () => {
      // One backoff per connection: node-redis counts retries per outage.
      const backoff = new Backoff({ initialMs: 100, maxMs: 5000, ...options.reconnect });
      return {
        connectTimeout: this.#timeoutMs,
        reconnectStrategy: (retries: number) => {
          if (retries === 0) backoff.reset();
          return backoff.next();
        },
        ...(this.#url.tls ? { tls: true as const, ...(options.ca ? { ca: options.ca } : {}) } : {}),
      };
    };
    this.#client = createClient({
      url: this.#url.url,
      disableOfflineQueue: true,
      socket: socket(),
    });
    this.#sub = this.#client.duplicate({ socket: socket() });
    this.#client.on("ready", () => this.#setState({ status: "connected", since: Date.now() }));
    this.#client.on("error", (err: unknown) => this.#failed(err));
    this.#sub.on("error", (err: unknown) => this.#log.debug(`feed: ${this.#mask(err)}`));
    this.#sub.on("ready", () => this.#feedUp());
    this.#client.connect().catch((err: unknown) => this.#failed(err));
    this.#sub.connect().catch(() => {});
  }

  /** {@inheritDoc ClusterStore.address} */
  get address(): string {
    return this.#url.address;
  }

  /** {@inheritDoc ClusterStore.state} */
  get state(): StoreState {
    return this.#state;
  }

  /** Resolves once the command connection is up (at once if it is); rejects when closed first. */
  connected(signal?: AbortSignal): Promise<void> {
    if (this.#state.status === "connected") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const stop = () => {
        off();
        reject(new Error(`store ${this.address}: not connected`));
      };
      const off = this.subscribe((m) => {
        if (m.type === "state" && m.state.status === "connected") {
          off();
          signal?.removeEventListener("abort", stop);
          this.#closer.signal.removeEventListener("abort", stop);
          resolve();
        }
      });
      signal?.addEventListener("abort", stop, { once: true });
      this.#closer.signal.addEventListener("abort", stop, { once: true });
    });
  }

  /** {@inheritDoc ClusterStore.claim} */
  async claim(requests: ClaimRequest[], owner: Owner, ttlMs: number): Promise<ClaimResult> {
    const wanted = dedupe(requests.map((r) => ({ ...r, ...normalKey(r) })));
    const reply = await this.#run("claim", JSON.stringify(owner), ttlMs, JSON.stringify(wanted));
    if (!reply.ok) return reply;
    if (reply.value.ok === false) {
      return { ok: false, reason: "held", conflicts: list<Claim>(reply.value.conflicts) };
    }
    return {
      ok: true,
      claims: list<Claim>(reply.value.claims),
      replaced: list<Claim>(reply.value.replaced),
    };
  }

  /** {@inheritDoc ClusterStore.renew} */
  async renew(held: HeldKey[], ttlMs: number): Promise<RenewResult> {
    const reply = await this.#run("renew", ttlMs, JSON.stringify(held.map(normalHeld)));
    if (!reply.ok) return reply;
    return { ok: true, kept: list<Claim>(reply.value.kept), lost: list<LostKey>(reply.value.lost) };
  }

  /** {@inheritDoc ClusterStore.release} */
  async release(held: HeldKey[]): Promise<ReleaseResult> {
    const reply = await this.#run("release", JSON.stringify(held.map(normalHeld)));
    if (!reply.ok) return reply;
    return {
      ok: true,
      released: list<ClaimKey>(reply.value.released),
      notHeld: list<ClaimKey>(reply.value.notHeld),
    };
  }

  /** {@inheritDoc ClusterStore.lookup} */
  async lookup(key: ClaimKey): Promise<LookupResult> {
    const k = normalKey(key);
    const reply = await this.#run("lookup", k.kind, k.key);
    if (!reply.ok) return reply;
    return { ok: true, claim: reply.value.claim as Claim | undefined };
  }

  /** {@inheritDoc ClusterStore.snapshot} */
  async snapshot(): Promise<SnapshotResult> {
    const [claims, , nodes, , , epochKey] = this.#keys as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const reply = await this.#guard("snapshot", () =>
      this.#client.multi()
        .addCommand(["TIME"])
        .addCommand(["SET", epochKey, `${Date.now()}.${newId().slice(0, 8)}`, "NX"])
        .addCommand(["GET", epochKey])
        .addCommand(["HGETALL", claims])
        .addCommand(["HGETALL", nodes])
        .exec());
    if (!reply.ok) return reply;
    const [time, , epoch, claimsFlat, nodesFlat] = reply.value as unknown[];
    const [sec, usec] = (time as [string, string]).map(Number) as [number, number];
    const now = sec * 1000 + Math.floor(usec / 1000);
    this.#sawEpoch(String(epoch));
    return {
      ok: true,
      snapshot: {
        epoch: String(epoch),
        now,
        claims: liveItems<Claim>(claimsFlat, now),
        nodes: liveItems<NodeRecord>(nodesFlat, now),
      },
    };
  }

  /** {@inheritDoc ClusterStore.join} */
  async join(node: NodeInfo, ttlMs: number): Promise<JoinResult> {
    const info = {
      name: node.name,
      instance: node.instance,
      advertise: node.advertise,
      started: node.started,
    };
    const reply = await this.#run("join", JSON.stringify(info), ttlMs);
    if (!reply.ok) return reply;
    if (reply.value.ok === false) {
      return { ok: false, reason: "name_taken", holder: reply.value.holder as NodeRecord };
    }
    return { ok: true, epoch: reply.value.epoch, fresh: reply.value.fresh === true };
  }

  /** {@inheritDoc ClusterStore.leave} */
  async leave(node: Pick<NodeInfo, "name" | "instance">): Promise<{ ok: true } | Unreachable> {
    const reply = await this.#run("leave", node.name, node.instance);
    return reply.ok ? { ok: true } : reply;
  }

  /** {@inheritDoc ClusterStore.reap} */
  async reap(): Promise<ReapResult> {
    const reply = await this.#run("reap", 10_000);
    if (!reply.ok) return reply;
    return { ok: true, claims: reply.value.claims as number, nodes: reply.value.nodes as number };
  }

  /** {@inheritDoc ClusterStore.subscribe} */
  subscribe(listener: FeedListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** {@inheritDoc ClusterStore.close} */
  close(): Promise<void> {
    if (this.#closer.signal.aborted) return Promise.resolve();
    this.#closer.abort();
    for (const done of this.#marks.values()) done();
    this.#listeners.clear();
    this.#client.destroy();
    this.#sub.destroy();
    return Promise.resolve();
  }

  /** Runs one script and parses its JSON reply. */
  async #run(
    name: ScriptName,
    ...args: Array<string | number>
  ): Promise<{ ok: true; value: Reply } | Unreachable> {
    const reply = await this.#guard(name, () => this.#eval(name, args.map(String)));
    if (!reply.ok) return reply;
    const value = JSON.parse(String(reply.value)) as Reply;
    this.#sawEpoch(value.epoch);
    return { ok: true, value };
  }

  /** One round trip with a deadline; every failure becomes `unreachable` with a masked message. */
  async #guard<T>(
    what: string,
    call: () => Promise<T>,
  ): Promise<{ ok: true; value: T } | Unreachable> {
    if (this.#closer.signal.aborted) return this.#unreachable("the store client is closed");
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no reply within ${this.#timeoutMs} ms`)),
          this.#timeoutMs,
        );
      });
      const value = await Promise.race([call(), timeout]);
      if (this.#state.status !== "connected" && this.#client.isReady) {
        this.#setState({ status: "connected", since: Date.now() });
      }
      return { ok: true, value };
    } catch (err) {
      if (err instanceof ErrorReply) {
        this.#log.warn(`store ${this.address}: ${what}: ${this.#mask(err)}`);
      }
      this.#failed(err);
      return this.#unreachable(this.#mask(err));
    } finally {
      clearTimeout(timer);
    }
  }

  async #eval(name: ScriptName, args: string[]): Promise<unknown> {
    const keys = [String(this.#keys.length), ...this.#keys];
    const sha = await this.#sha(name);
    try {
      return await this.#client.sendCommand(["EVALSHA", sha, ...keys, this.#channel, ...args]);
    } catch (err) {
      if (!(err instanceof ErrorReply) || !err.message.startsWith("NOSCRIPT")) throw err;
      // First use on this Redis, or it restarted: EVAL also caches the script.
      return await this.#client.sendCommand([
        "EVAL",
        SCRIPTS[name],
        ...keys,
        this.#channel,
        ...args,
      ]);
    }
  }

  #sha(name: ScriptName): Promise<string> {
    let sha = this.#shas.get(name);
    if (!sha) {
      sha = crypto.subtle.digest("SHA-1", new TextEncoder().encode(SCRIPTS[name])).then((d) =>
        [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("")
      );
      this.#shas.set(name, sha);
    }
    return sha;
  }

  #unreachable(error: string): Unreachable {
    const since = this.#state.status === "unreachable" ? this.#state.since : Date.now();
    return { ok: false, reason: "unreachable", since, error };
  }

  #failed(err: unknown): void {
    if (this.#closer.signal.aborted) return;
    const error = this.#mask(err);
    if (this.#state.status === "unreachable") {
      this.#state = { ...this.#state, error };
      return;
    }
    this.#setState({ status: "unreachable", since: Date.now(), error });
  }

  #setState(state: StoreState): void {
    if (this.#closer.signal.aborted || state.status === this.#state.status) return;
    this.#state = state;
    if (state.status === "unreachable") {
      this.#log.warn(`store ${this.address} unreachable: ${state.error}`);
    } else if (state.status === "connected") this.#log.info(`store ${this.address} connected`);
    this.#emit({ type: "state", state });
    if (state.status === "connected") this.#feedUp();
  }

  #sawEpoch(epoch: string): void {
    if (this.#epoch === epoch) return;
    const had = this.#epoch;
    this.#epoch = epoch;
    if (had !== undefined) {
      this.#log.warn(`store ${this.address} lost its data (epoch ${had} -> ${epoch})`);
      this.#emit({ type: "reset", epoch });
    }
  }

  /**
   * Makes sure the subscription is live, then says `feed_ready`: publishes a
   * marker and waits for it to come back on the feed connection, so that no
   * event after the listeners' snapshot can be missed. Called whenever either
   * connection comes up; a call during a check makes it run once more.
   */
  #feedUp(): void {
    this.#feedWanted = true;
    if (!this.#confirming) void this.#confirmFeed();
  }

  async #confirmFeed(): Promise<void> {
    this.#confirming = true;
    try {
      while (this.#feedWanted && !this.#closer.signal.aborted) {
        this.#feedWanted = false;
        // Whichever connection is still down calls again when it is up.
        if (!this.#sub.isReady || !this.#client.isReady) continue;
        if (await this.#markComesBack()) {
          if (!this.#closer.signal.aborted) this.#emit({ type: "feed_ready" });
        } else if (this.#sub.isReady && this.#client.isReady) {
          this.#feedWanted = true; // both up but the marker was lost: try again
          await sleep(100, this.#closer.signal);
        }
      }
    } finally {
      this.#confirming = false;
    }
  }

  async #markComesBack(): Promise<boolean> {
    const id = newId();
    try {
      if (!this.#subscribed) {
        await this.#sub.subscribe(this.#channel, (message: string) => this.#message(message));
        this.#subscribed = true;
      }
      const back = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), MARK_TIMEOUT_MS);
        this.#marks.set(id, () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      await this.#client.publish(this.#channel, JSON.stringify({ type: "mark", id }));
      return await back;
    } catch (err) {
      this.#log.debug(`feed: ${this.#mask(err)}`);
      return false;
    } finally {
      this.#marks.get(id)?.();
      this.#marks.delete(id);
    }
  }

  #message(text: string): void {
    let message: { type?: unknown; id?: unknown };
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message.type === "mark") {
      if (typeof message.id === "string") this.#marks.get(message.id)?.();
      return;
    }
    if (isStoreEvent(message)) this.#emit(message);
  }

  #emit(message: FeedMessage): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(message);
      } catch (err) {
        this.#log.error(`feed listener failed: ${this.#mask(err)}`);
      }
    }
  }

  #mask(err: unknown): string {
    return maskStore(this.#url, err instanceof Error ? err.message : String(err));
  }
}

const EVENT_TYPES = new Set([
  "claim",
  "release",
  "expire",
  "node_join",
  "node_leave",
  "node_expire",
]);

function isStoreEvent(m: { type?: unknown }): m is StoreEvent {
  return typeof m.type === "string" && EVENT_TYPES.has(m.type);
}

/** The values of a flat HGETALL reply, parsed, that are still live at `now`. */
function liveItems<T extends { expiresAt: number }>(flat: unknown, now: number): T[] {
  const items = Array.isArray(flat) ? flat : [];
  const out: T[] = [];
  for (let i = 1; i < items.length; i += 2) {
    const item = JSON.parse(String(items[i])) as T;
    if (item.expiresAt > now) out.push(item);
  }
  return out;
}

/** Lua's cjson writes an empty list as `{}`. */
function list<T>(value: unknown): T[] {
  return Array.isArray(value) ? value as T[] : [];
}

function normalHeld(h: HeldKey): HeldKey {
  return { ...normalKey(h), token: h.token, session: h.session };
}

function dedupe(requests: ClaimRequest[]): ClaimRequest[] {
  const seen = new Set<string>();
  return requests.filter((r) => {
    const id = `${r.kind}/${r.key}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}
