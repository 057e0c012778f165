/**
 * The public ports this node opens for groups held on other nodes: each
 * listens on this node's `public_host` and relays every user to the holder
 * over a relay link, as the view says who holds the port at that moment (a
 * lookup in memory, no store operation per user).
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import type { Claim, NodeRecord } from "../../cluster/store.ts";
import { type BufferPool, join } from "../../tunnel/join.ts";
import { acceptLoop, closeQuietly, netReason, peer } from "../../transport/net.ts";
import type { RareLog } from "../../util/rare_log.ts";
import { errorMessage } from "../../util/errors.ts";
import { sleep } from "../../util/backoff.ts";
import type { RelayDialer } from "./relay.ts";

/** What the remote ports need around them. */
export interface RemotePortsDeps {
  self: string;
  publicHost: string;
  log: Logger;
  rare: RareLog;
  buffers: BufferPool;
  dialer: RelayDialer;
  /** Who holds the port now. */
  holder(port: number): Claim | undefined;
  /** A live node by name. */
  node(name: string): NodeRecord | undefined;
}

interface Relayed {
  listener: Deno.TcpListener | undefined;
  serving: Promise<void>;
  users: Set<Deno.TcpConn>;
  closed: boolean;
}

/** How long opening a port keeps trying while the port is still busy here (a local app closing). */
const BIND_TRIES_MS = 10_000;

/** The listeners for ports other nodes hold. */
export class RemotePorts {
  #d: RemotePortsDeps;
  #ports = new Map<number, Relayed>();
  #closing = new Map<number, Promise<void>>();
  /** Users relayed now, and in all. */
  relayed = { open: 0, total: 0 };

  constructor(deps: RemotePortsDeps) {
    this.#d = deps;
  }

  /** Ports listened on for other nodes. */
  ports(): number[] {
    return [...this.#ports.keys()];
  }

  /** Starts listening on `port` for its holder elsewhere (at once if it is free here). */
  open(port: number): void {
    if (this.#ports.has(port)) return;
    const entry: Relayed = {
      listener: undefined,
      serving: Promise.resolve(),
      users: new Set(),
      closed: false,
    };
    this.#ports.set(port, entry);
    entry.serving = this.#listen(port, entry);
  }

  /** Stops listening on `port` and drops its users; resolves once the port is free. */
  close(port: number): Promise<void> {
    const entry = this.#ports.get(port);
    if (!entry) return this.#closing.get(port) ?? Promise.resolve(); // perhaps still closing
    this.#ports.delete(port);
    entry.closed = true;
    if (entry.listener) closeQuietly(entry.listener);
    for (const user of entry.users) closeQuietly(user);
    const closing = entry.serving.finally(() => {
      if (this.#closing.get(port) === closing) this.#closing.delete(port);
    });
    this.#closing.set(port, closing);
    return closing;
  }

  /** True while `port` is listened on here for another node, or still closing. */
  here(port: number): boolean {
    return this.#ports.has(port) || this.#closing.has(port);
  }

  /** Closes every port. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#ports.keys()].map((p) => this.close(p)));
  }

  async #listen(port: number, entry: Relayed): Promise<void> {
    const deadline = Date.now() + BIND_TRIES_MS;
    while (!entry.closed) {
      try {
        entry.listener = Deno.listen({ hostname: this.#d.publicHost, port, transport: "tcp" });
        break;
      } catch (err) {
        if (!(err instanceof Deno.errors.AddrInUse) || Date.now() > deadline) {
          this.#d.log.warn(`cluster: cannot open port ${port} for its node: ${netReason(err)}`);
          if (this.#ports.get(port) === entry) this.#ports.delete(port);
          return;
        }
        await sleep(100);
      }
    }
    if (entry.closed || !entry.listener) {
      if (entry.listener) closeQuietly(entry.listener);
      return;
    }
    this.#d.log.debug(`cluster: port ${port} open here for node ${this.#d.holder(port)?.node}`);
    await acceptLoop(
      entry.listener,
      (user) => void this.#relay(port, user, entry),
      (reason) => this.#d.log.warn(`cluster: port ${port}: accept failed: ${reason}`),
    );
  }

  async #relay(port: number, user: Deno.TcpConn, entry: Relayed): Promise<void> {
    const from = peer(user);
    const claim = this.#d.holder(port);
    const node = claim === undefined ? undefined : this.#d.node(claim.node);
    if (claim === undefined || node === undefined || claim.node === this.#d.self) {
      this.#d.log.debug(`cluster: user ${from} on port ${port}: no live holder`);
      return closeQuietly(user);
    }
    entry.users.add(user);
    this.relayed.open++;
    this.relayed.total++;
    try {
      const { remoteAddr: u, localAddr: l } = user;
      let stream;
      try {
        stream = await this.#d.dialer.open(node.name, node.advertise, {
          port,
          from: { hostname: u.hostname, port: u.port },
          to: { hostname: l.hostname, port: l.port },
        });
      } catch (err) {
        this.#d.rare.warn(`relay-${node.name}`, `cluster: ${errorMessage(err)}`);
        return;
      }
      user.setNoDelay(true);
      const result = await join(user, stream, { pool: this.#d.buffers });
      if (result.error !== undefined) stream.reset();
      this.#d.log.debug(
        `cluster: user ${from} on port ${port} relayed to ${node.name}: ` +
          `${result.aToB} bytes in, ${result.bToA} out`,
      );
    } finally {
      closeQuietly(user);
      entry.users.delete(user);
      this.relayed.open--;
    }
  }
}
