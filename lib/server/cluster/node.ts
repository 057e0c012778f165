/**
 * This server as a node of a cluster: it joins the store, keeps its leases
 * (`LeaseKeeper`), follows everyone's claims (`ClusterView`), claims each
 * group name, public port and web host name of its own sessions
 * cluster-wide, opens the ports and routes the names other nodes hold
 * (`remote_ports.ts`, `remote_hosts.ts`) and serves users relayed to it
 * (`relay.ts`). The server calls it at four points: a group registering, a
 * port or a web app's names being claimed, a claim being given up; none per
 * user connection or request.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { ClusterView, type ViewEvent } from "../../cluster/view.ts";
import { LeaseKeeper } from "../../cluster/keeper.ts";
import { parseStoreUrl } from "../../cluster/store_url.ts";
import {
  type Claim,
  type ClaimKey,
  type ClaimRequest,
  type ClusterStore,
  keyId,
  type NodeInfo,
  type StoreState,
} from "../../cluster/store.ts";
import { formatHostPort, type HostPort, parseHostPort } from "../../util/addr.ts";
import { ConfigError, ListenError, type WireRefusalCode } from "../../util/errors.ts";
import { newId, Secret } from "../../util/secret.ts";
import { sleep } from "../../util/backoff.ts";
import type { RareLog } from "../../util/rare_log.ts";
import type { BufferPool } from "../../tunnel/join.ts";
import { netReason } from "../../transport/net.ts";
import type { Transport } from "../../transport/transport.ts";
import type { ClusterInfo, ClusterOptions } from "../api.ts";
import type { PublicApp } from "../public_app.ts";
import { bindPublicPort } from "../public_port.ts";
import { RelayDialer, RelayListener } from "./relay.ts";
import { RelayKeys } from "./relay_auth.ts";
import { RelayedConn } from "./relayed_conn.ts";
import { RemotePorts } from "./remote_ports.ts";
import { RemoteHosts, type WebHost, webMeta } from "./remote_hosts.ts";
import type { ClusterWebNames } from "../web.ts";

/** What the node needs of the server. */
export interface ClusterHost extends WebHost {
  log: Logger;
  rare: RareLog;
  publicHost: string;
  heartbeatTimeoutMs: number;
  buffers: BufferPool;
  /** The server's own transport: the relay listens with it. */
  transport: Transport;
  /** Its CA's fingerprint (64 hex digits), undefined without TLS: relay hellos bind to it. */
  identity: string | undefined;
  /** The local app on a public port. */
  appOnPort(port: number): PublicApp | undefined;
  /** Ends a local session whose claims another session took. */
  endSession(id: string, reason: string): void;
}

/** Who asks for a claim: a local session. */
export interface Claimant {
  readonly id: string;
  readonly group: string;
  readonly runId: string;
  readonly ended: boolean;
}

/** A refusal, or "retry" when the store stayed unreachable. */
export type ClaimAnswer = { code: WireRefusalCode; message: string } | "retry" | undefined;

/** How long an expose waits for an unreachable store. */
const EXPOSE_WAIT_MS = 60_000;
/** Between tries while the store is unreachable. */
const RETRY_MS = 250;

/** One node of a cluster. */
export class ClusterNode implements ClusterInfo {
  readonly node: string;
  readonly store: string;
  relay!: HostPort;
  advertise!: string;
  #o: ClusterOptions;
  #h: ClusterHost;
  #store!: ClusterStore & { connected(signal?: AbortSignal): Promise<void> };
  #keys: RelayKeys;
  #view!: ClusterView;
  #keeper!: LeaseKeeper;
  #listener!: RelayListener;
  #dialer: RelayDialer;
  #remote: RemotePorts;
  /** The names of other nodes' web apps, routed by this node's edge. */
  readonly hosts: RemoteHosts;
  #info!: NodeInfo;
  #closing = new AbortController();
  #offView: () => void = () => {};

  constructor(options: ClusterOptions, host: ClusterHost) {
    this.#o = options;
    this.#h = host;
    const url = parseStoreUrl(options.store);
    this.store = url.address;
    this.node = options.node ?? defaultNodeName();
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(this.node)) {
      throw new ConfigError(
        "cluster.node: must be 1-63 letters, digits, dots, dashes or underscores",
      );
    }
    const secret = typeof options.secret === "string" ? new Secret(options.secret) : options.secret;
    if (secret.reveal().length < 16) {
      throw new ConfigError("cluster.secret: must be at least 16 characters");
    }
    this.#keys = new RelayKeys(secret);
    const tls = host.transport.encrypted;
    this.#dialer = new RelayDialer({ keys: this.#keys, self: this.node, tls, log: host.log });
    this.#remote = new RemotePorts({
      self: this.node,
      publicHost: host.publicHost,
      log: host.log,
      rare: host.rare,
      buffers: host.buffers,
      dialer: this.#dialer,
      holder: (port) => this.#view.byPort(port),
      node: (name) => this.#view.node(name),
    });
    this.hosts = new RemoteHosts({
      self: this.node,
      log: host.log,
      buffers: host.buffers,
      keys: this.#keys,
      dialer: this.#dialer,
      host,
      holder: (name) => this.#view.byHost(name),
      node: (name) => this.#view.node(name),
    });
  }

  /** The view of the whole cluster. */
  get view(): ClusterView {
    return this.#view;
  }

  /** Whether the store answers. */
  get state(): StoreState {
    return this.#store.state;
  }

  /** Users relayed from this node to others: open now and in all. */
  get relayed(): { open: number; total: number } {
    return this.#remote.relayed;
  }

  /** Binds the relay listener and joins the store (waiting while it is unreachable). */
  async start(): Promise<void> {
    // Loaded here, so that the library's module graph (and its docs) has no Redis client.
    const { RedisStore } = await import("../../cluster/redis_store.ts");
    this.#store = new RedisStore({ url: this.#o.store });
    this.#view = new ClusterView(this.#store, { retryMs: 500 });
    this.#offView = this.#view.on((e) => this.#viewed(e));
    const bind = parseHostPort(this.#o.relay);
    if (typeof bind === "string") throw new ConfigError(`cluster.relay: ${bind}`);
    try {
      this.#listener = await RelayListener.start(this.#h.transport, bind, {
        identity: this.#h.identity,
        keys: this.#keys,
        self: this.node,
        log: this.#h.log,
        handle: (stream, user, peer) => {
          if (user.host !== undefined) return void this.hosts.serve(stream, user, peer);
          const app = this.#h.appOnPort(user.port);
          if (app === undefined) {
            this.#h.log.debug(`cluster: node ${peer} relayed a user for port ${user.port}: no app`);
            return stream.reset("no app on that port here");
          }
          void app.serve(new RelayedConn(stream, user));
        },
      });
    } catch (err) {
      throw new ListenError(`cannot listen for relay links on ${this.#o.relay}: ${netReason(err)}`);
    }
    this.relay = this.#listener.addr;
    this.advertise = this.#o.advertise ?? formatHostPort(this.relay);
    this.#info = {
      name: this.node,
      instance: newId(),
      advertise: this.advertise,
      started: Date.now(),
    };
    const ttl = this.#h.heartbeatTimeoutMs;
    await Promise.race([this.#store.connected(), sleep(3000, this.#closing.signal)]);
    for (let warned = 0;; warned++) {
      const joined = await this.#store.join(this.#info, ttl);
      if (joined.ok) break;
      if (joined.reason === "name_taken") {
        await this.#listener.close();
        throw new ConfigError(
          `cluster.node: node name ${this.node} is in use by a live node at ${joined.holder.advertise}`,
        );
      }
      if (warned % 20 === 0) {
        this.#h.log.warn(`cluster: store ${this.store} unreachable: ${joined.error}; waiting`);
      }
      await sleep(RETRY_MS, this.#closing.signal);
      if (this.#closing.signal.aborted) return;
    }
    this.#keeper = new LeaseKeeper({ store: this.#store, node: this.#info, ttlMs: ttl });
    this.#keeper.on((e) => {
      if (e.type === "lost") {
        for (const key of e.keys) {
          const who = key.holder ? `node ${key.holder.node}` : "no one";
          this.#h.endSession(
            key.session,
            `its claim on ${keyId(key)} was lost (now held by ${who})`,
          );
        }
      } else if (e.type === "unreachable") {
        this.#h.rare.warn("cluster-store", `cluster: store ${this.store} unreachable: ${e.error}`);
      }
    });
    this.#keeper.start();
    await this.#view.synced();
    this.#h.log.info(
      `cluster: joined as node ${this.node} via ${this.store}, relay on ${this.advertise}`,
    );
  }

  /** Claims a group name for a registering session. */
  claimGroup(who: Claimant, waitMs: number): Promise<ClaimAnswer> {
    return this.#claim(who, [{ kind: "group", key: who.group }], waitMs, (held) => ({
      code: "group_live",
      message: `group ${who.group} is live on node ${held.node} from another client`,
    }));
  }

  /** Claims a public port for an app of `who`. */
  claimPort(who: Claimant, port: number): Promise<ClaimAnswer> {
    return this.#claim(who, [{ kind: "port", key: String(port) }], EXPOSE_WAIT_MS, (held) => ({
      code: "port_taken",
      message: `port ${port} is taken on node ${held.node}`,
    }));
  }

  /** Claims the host names of a web app of `who`; on success they are routed here only. */
  async claimHosts(who: Claimant, web: ClusterWebNames): Promise<ClaimAnswer> {
    const { names, credentials } = web;
    const auth = credentials === undefined ? {} : { auth: await this.#keys.authTag(credentials) };
    const text = webMeta({ ...web.meta, ...auth });
    const requests = names.map((key) => ({ kind: "host" as const, key, meta: text }));
    const answer = await this.#claim(who, requests, EXPOSE_WAIT_MS, (held) => ({
      code: "host_taken",
      message: `host name ${held.key} is taken by an app on node ${held.node}`,
    }));
    if (answer === undefined) { for (const name of names) this.hosts.drop(name.toLowerCase()); }
    return answer;
  }

  /**
   * Claims a public port cluster-wide and binds it here: `port`, or (0) the
   * first of `candidates` no other run holds. "retry" when the store stayed
   * unreachable.
   */
  async bindPort(
    who: Claimant,
    port: number,
    candidates: number[],
    unbindable: (why: string) => void,
  ): Promise<ReturnType<typeof bindPublicPort> | "retry"> {
    const free = candidates.filter((c) => {
      const claim = this.#view.byPort(c);
      return claim === undefined || claim.runId === who.runId;
    });
    if (free.length === 0 && port !== 0) {
      const node = this.#view.byPort(port)?.node;
      return { code: "port_taken", message: `port ${port} is taken on node ${node}` };
    }
    for (const candidate of free) {
      const claimed = await this.claimPort(who, candidate);
      if (claimed === "retry") return "retry";
      if (claimed !== undefined) {
        if (port !== 0) return claimed;
        continue;
      }
      // Listened on here for the previous holder: closed, its port may take a moment to be free.
      const relayedHere = this.#remote.here(candidate);
      await this.#remote.close(candidate);
      const deadline = Date.now() + (relayedHere ? 2000 : 0);
      let bound = bindPublicPort(this.#h.publicHost, port, [candidate], unbindable);
      while ("code" in bound && Date.now() < deadline && !who.ended) {
        await sleep(50, this.#closing.signal);
        bound = bindPublicPort(this.#h.publicHost, port, [candidate], unbindable);
      }
      if (!("code" in bound)) return bound;
      this.release(who, [{ kind: "port", key: String(candidate) }]);
      if (port !== 0) return bound;
    }
    return { code: "no_free_port", message: "no free port is left in the cluster's allowed ports" };
  }

  /** Gives up `who`'s claims on `keys` (all of them when none are named). */
  release(who: Pick<Claimant, "id">, keys?: ClaimKey[]): void {
    const ids = keys === undefined ? undefined : new Set(keys.map(keyId));
    const held =
      this.#keeper?.held().filter((c) =>
        c.session === who.id && (ids === undefined || ids.has(keyId(c)))
      ) ?? [];
    if (held.length === 0) return;
    this.#keeper.drop(held);
    void this.#store.release(held).then((r) => {
      if (!r.ok) this.#h.log.debug(`cluster: release failed (${r.error}); the leases run out`);
    });
  }

  /** Leaves the cluster: releases everything at once and closes the links. */
  async close(): Promise<void> {
    this.#closing.abort();
    this.#offView();
    await this.#keeper?.close({ leave: true });
    this.#view?.close();
    this.#dialer.close();
    await this.#listener?.close();
    await this.#remote.closeAll();
    await this.#store?.close();
  }

  async #claim(
    who: Claimant,
    requests: ClaimRequest[],
    waitMs: number,
    refusal: (held: Claim) => { code: WireRefusalCode; message: string },
  ): Promise<ClaimAnswer> {
    const owner = { node: this.node, session: who.id, runId: who.runId };
    const deadline = Date.now() + waitMs;
    while (true) {
      const result = await this.#store.claim(requests, owner, this.#h.heartbeatTimeoutMs);
      if (result.ok) {
        this.#keeper.hold(result.claims);
        if (who.ended) this.release(who); // it ended while the store answered
        return who.ended ? "retry" : undefined;
      }
      if (result.reason === "held") return refusal(result.conflicts[0]!);
      if (who.ended || this.#closing.signal.aborted) return "retry";
      if (Date.now() > deadline) return "retry";
      this.#h.rare.warn(
        "cluster-wait",
        `cluster: store unreachable (${result.error}); ${who.group} waits`,
      );
      await sleep(RETRY_MS, this.#closing.signal);
    }
  }

  #viewed(e: ViewEvent): void {
    switch (e.type) {
      case "claimed": {
        const { claim, replaced } = e;
        if (replaced && replaced.node === this.node && replaced.session !== claim.session) {
          this.#h.endSession(
            replaced.session,
            `group ${claim.kind === "group" ? claim.key : ""} was taken over on node ${claim.node}`,
          );
        }
        if (claim.kind === "host") {
          return claim.node === this.node ? this.hosts.drop(claim.key) : this.hosts.held(claim);
        }
        if (claim.kind !== "port") return;
        if (claim.node === this.node) void this.#remote.close(Number(claim.key));
        else this.#remote.open(Number(claim.key));
        return;
      }
      case "released":
        if (e.claim.kind === "host" && e.claim.node !== this.node) {
          const now = this.#view.byHost(e.claim.key);
          if (now === undefined || now.node === this.node) this.hosts.drop(e.claim.key);
          else this.hosts.held(now);
        }
        if (e.claim.kind === "port" && e.claim.node !== this.node) {
          const now = this.#view.byPort(Number(e.claim.key));
          if (now === undefined) void this.#remote.close(Number(e.claim.key));
        }
        return;
      case "node_down":
        this.#dialer.drop(e.node.name);
        return;
      default:
        return;
    }
  }
}

/** The host name (when this process may read it) and a short random suffix. */
function defaultNodeName(): string {
  let host = "burrow";
  try {
    host = Deno.hostname().split(".")[0]!.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 40) || host;
  } catch { /* no --allow-sys */ }
  return `${host}-${newId().slice(0, 6)}`;
}
