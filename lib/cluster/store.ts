/**
 * What a burrow server needs from the store a cluster shares: leases on the
 * names a group occupies (its group name, public ports and host names), node
 * membership, and a feed of every change. The Redis implementation is
 * `redis_store.ts`; `view.ts` keeps each node's own picture of the store.
 *
 * The vocabulary, once:
 * - A **claim** is a lease on one key (`port/20001`, `host/app.example.net`,
 *   `group/lab`) held by an **owner**: a node, a session on that node, and
 *   the client's run id. It expires unless renewed before `expiresAt`.
 * - Every claim carries a **fencing token**, from one counter that only
 *   grows. Renewing or releasing names the token (and session) it holds, so
 *   a node cut off from the store that comes back with an old token cannot
 *   renew or take back a key that a newer session holds elsewhere.
 * - **Takeover**: a claim by a new session with the same run id (the client
 *   reconnected, perhaps to another node) replaces the holder and gets a new
 *   token. A **reassert** (a request that names the token it held) never
 *   takes over: it only re-creates a claim the store lost.
 * - The **feed** delivers each claim, release and expiry to every node, so
 *   that routing is a lookup in memory: no store operation per user.
 *
 * Expected failures are results, not exceptions: a store that cannot be
 * reached answers `{ ok: false, reason: "unreachable" }`, and the caller
 * keeps its live tunnels and retries later. Every operation is idempotent,
 * so a retry after a lost reply is safe.
 *
 * @module
 */

/** What a claim is on. Each kind is its own namespace of keys. */
export type ClaimKind = "group" | "port" | "host";

/** One key of one kind: a group name, a public port (as text) or a host name. */
export interface ClaimKey {
  /** The namespace. */
  kind: ClaimKind;
  /** The key in it; host names are compared in lower case (see {@linkcode normalKey}). */
  key: string;
}

/** Who holds a claim. */
export interface Owner {
  /** The node's name in the cluster. */
  node: string;
  /** The session on that node: a new one per client connection. */
  session: string;
  /** The client's run id: the same across its reconnections. */
  runId: string;
}

/** A live lease as the store has it. Times are the store's clock, in ms since the epoch. */
export interface Claim extends ClaimKey, Owner {
  /** Fencing token: larger than every token handed out before it. */
  token: number;
  /** When this holder got the key (a renewal keeps it). */
  since: number;
  /** When the lease runs out unless renewed. */
  expiresAt: number;
  /** What the holder said of the key when it took it (a host name: its app, see `remote_hosts.ts`). */
  meta?: string;
}

/**
 * A key asked for. With `token` it is a reassert of a claim held before
 * (after the store lost it): granted only if the key is free or still ours.
 */
export interface ClaimRequest extends ClaimKey {
  /** The fencing token held before, for a reassert. */
  token?: number;
  /** A short text for every node to read with the claim (at most 1 KiB); a renewal keeps it. */
  meta?: string;
}

/** A claim as its holder names it to renew or release it. */
export interface HeldKey extends ClaimKey {
  /** The token the holder was given. */
  token: number;
  /** The holder's session. */
  session: string;
}

/** A member of the cluster, as the node reports itself. */
export interface NodeInfo {
  /** The node's name, unique in the cluster. */
  name: string;
  /** A random id of this process, so a second process with the same name is refused. */
  instance: string;
  /** The `HOST:PORT` other nodes dial for relaying. */
  advertise: string;
  /** When the process started, ms since the epoch. */
  started: number;
}

/** A live member as the store has it. */
export interface NodeRecord extends NodeInfo {
  /** The last heartbeat, by the store's clock. */
  lastSeen: number;
  /** When the node's lease runs out unless it beats again. */
  expiresAt: number;
}

/** The answer of every operation while the store cannot be reached. */
export interface Unreachable {
  ok: false;
  reason: "unreachable";
  /** Since when the store has been unreachable (ms since the epoch, local clock). */
  since: number;
  /** What went wrong, credentials masked. */
  error: string;
}

/** The answer to {@linkcode ClusterStore.claim}: all keys or none. */
export type ClaimResult =
  | {
    ok: true;
    /** One claim per requested key, in request order. */
    claims: Claim[];
    /** Claims that a takeover by the same run id replaced. */
    replaced: Claim[];
  }
  | {
    ok: false;
    reason: "held";
    /** The keys held by someone else (another run, or a newer session for a reassert). */
    conflicts: Claim[];
  }
  | Unreachable;

/** A held key that a renewal found gone or taken. */
export interface LostKey extends HeldKey {
  /** Who holds it now, if anyone. */
  holder?: Claim;
}

/** The answer to {@linkcode ClusterStore.renew}. */
export type RenewResult =
  | { ok: true; kept: Claim[]; lost: LostKey[] }
  | Unreachable;

/** The answer to {@linkcode ClusterStore.release}. */
export type ReleaseResult =
  | { ok: true; released: ClaimKey[]; notHeld: ClaimKey[] }
  | Unreachable;

/** The answer to {@linkcode ClusterStore.lookup}. */
export type LookupResult = { ok: true; claim: Claim | undefined } | Unreachable;

/** Everything live in the store at one instant. */
export interface Snapshot {
  /** Changes when the store lost its data (see {@linkcode StoreEvent} `reset`). */
  epoch: string;
  /** The store's clock when it was taken. */
  now: number;
  claims: Claim[];
  nodes: NodeRecord[];
}

/** The answer to {@linkcode ClusterStore.snapshot}. */
export type SnapshotResult = { ok: true; snapshot: Snapshot } | Unreachable;

/** The answer to {@linkcode ClusterStore.join}, which is also the heartbeat. */
export type JoinResult =
  | {
    ok: true;
    epoch: string;
    /**
     * True when the store had no live record of this instance: the first
     * join, or the lease ran out (a partition) or the store lost its data.
     * The node should then reassert what it holds.
     */
    fresh: boolean;
  }
  | { ok: false; reason: "name_taken"; holder: NodeRecord }
  | Unreachable;

/** Counts of what a reap removed. */
export type ReapResult = { ok: true; claims: number; nodes: number } | Unreachable;

/** A change in the store, as every node's feed delivers it. */
export type StoreEvent =
  | { type: "claim"; claim: Claim; replaced?: Claim }
  | { type: "release"; claim: Claim }
  | { type: "expire"; claim: Claim }
  | { type: "node_join"; node: NodeRecord }
  | { type: "node_leave"; node: NodeRecord }
  | { type: "node_expire"; node: NodeRecord };

/** Whether the store answers. */
export type StoreState =
  | { status: "connecting"; since: number }
  | { status: "connected"; since: number }
  | { status: "unreachable"; since: number; error: string };

/**
 * What a feed listener hears: store events, and two signals.
 * - `feed_ready`: the subscription is (again) live; events may have been
 *   missed before it, so take a snapshot now.
 * - `reset`: the store's epoch changed, it lost its data (a restart without
 *   persistence, a flush); take a snapshot and reassert what you hold.
 * - `state`: the connection state changed.
 */
export type FeedMessage =
  | StoreEvent
  | { type: "feed_ready" }
  | { type: "reset"; epoch: string }
  | { type: "state"; state: StoreState };

/** A feed listener; it must not throw. */
export type FeedListener = (message: FeedMessage) => void;

/**
 * The shared store of a cluster. Each method is one store round trip (a
 * script, atomic in the store); none is made per user connection.
 */
export interface ClusterStore {
  /** `HOST:PORT` of the store, never with credentials: safe to print. */
  readonly address: string;
  /** The connection state now. */
  readonly state: StoreState;
  /**
   * Claims all of `requests` for `owner` with a lease of `ttlMs`, or none.
   * A key already held by the same session is renewed; one held by another
   * session of the same run id is taken over (unless the request is a
   * reassert); any other holder is a conflict.
   */
  claim(requests: ClaimRequest[], owner: Owner, ttlMs: number): Promise<ClaimResult>;
  /** Extends each lease that is still held by exactly this token and session. */
  renew(held: HeldKey[], ttlMs: number): Promise<RenewResult>;
  /** Gives up each key still held by exactly this token and session. */
  release(held: HeldKey[]): Promise<ReleaseResult>;
  /** The live claim on one key, if any. For tools and tests; routing uses the view. */
  lookup(key: ClaimKey): Promise<LookupResult>;
  /** All live claims and nodes, read atomically. */
  snapshot(): Promise<SnapshotResult>;
  /** Joins the cluster or beats: creates or extends this node's record. */
  join(node: NodeInfo, ttlMs: number): Promise<JoinResult>;
  /** Leaves the cluster at once (a clean stop); claims are released separately. */
  leave(node: Pick<NodeInfo, "name" | "instance">): Promise<{ ok: true } | Unreachable>;
  /** Removes expired claims and nodes and announces them. Every node calls it now and then. */
  reap(): Promise<ReapResult>;
  /** Listens to the feed; returns the function that stops listening. */
  subscribe(listener: FeedListener): () => void;
  /** Closes the connections; the leases run out by themselves. */
  close(): Promise<void>;
}

/**
 * A key in the form the store compares: host names in lower case, ports as
 * plain decimal, group names as given.
 */
export function normalKey(key: ClaimKey): ClaimKey {
  switch (key.kind) {
    case "host":
      return { kind: "host", key: key.key.toLowerCase() };
    case "port":
      return { kind: "port", key: String(Number(key.key)) };
    case "group":
      return { kind: "group", key: key.key };
  }
}

/** `kind/key`: one string per key, for maps. */
export function keyId(key: ClaimKey): string {
  return `${key.kind}/${key.key}`;
}
