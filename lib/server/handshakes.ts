/**
 * Handshake capacity: how many connections may be in their handshake at
 * once (in all, and per source), and what happens to those turned away. A
 * flood of unauthenticated connections must not exhaust descriptors, so
 * past the cap the accept loop waits and new connections stay in the
 * kernel's backlog.
 *
 * A connection whose transport says it is not settled when it is closed
 * (one whose close waits for its handshake, as `Deno.listenTls`' did) is
 * "parked" and keeps counting against the caps until its socket is really
 * gone. Both transports here close at once, so nothing parks today.
 *
 * @module
 */

import type { ServerLimits } from "../config/limits.ts";
import type { Incoming } from "../transport/transport.ts";
import type { RareLog } from "../util/rare_log.ts";
import { closeQuietly } from "../transport/net.ts";
import { type SourceGuard, sourceOf } from "../util/source_guard.ts";

/** Most connections a server lets sit in the handshake at once. */
export const MAX_HANDSHAKES = 512;

/** The connections of one server that are in their handshake, or parked. */
export class Handshakes {
  #guard: SourceGuard;
  #limits: ServerLimits;
  #rare: RareLog;
  /** Connections in their handshake, with the source each is counted against. */
  #open = new Map<Incoming, string>();
  /** Closed connections whose socket lingers until their transport handshake settles. */
  #parked = new Set<Incoming>();
  #waiters: Array<() => void> = [];
  #closing = false;

  constructor(guard: SourceGuard, limits: ServerLimits, rare: RareLog) {
    this.#guard = guard;
    this.#limits = limits;
    this.#rare = rare;
  }

  /**
   * Counts a new connection: the source it is counted against, or undefined
   * when it is turned away (it is then closed, and counted while it lingers).
   */
  enter(incoming: Incoming, from: string): string | undefined {
    if (this.#inFlight() >= MAX_HANDSHAKES) {
      this.#rare.warn(
        "flood",
        `${MAX_HANDSHAKES} handshakes in flight: turning new connections away (latest ${from})`,
      );
      this.#drop(incoming, undefined);
      return undefined;
    }
    const source = sourceOf(incoming.remoteAddr.hostname);
    if (!this.#guard.enter(source)) {
      this.#rare.warn(
        `source-flood`,
        `${this.#limits.handshakesPerSource} handshakes in flight from ${source}: ` +
          `turning its new connections away (limits.handshakes_per_source)`,
      );
      this.#drop(incoming, undefined);
      return undefined;
    }
    this.#open.set(incoming, source);
    return source;
  }

  /**
   * Ends a connection's handshake (once; later calls do nothing). One whose
   * transport handshake has not settled is being closed, but its socket
   * lives on until it settles: it stays counted until then.
   */
  leave(incoming: Incoming): void {
    const source = this.#open.get(incoming);
    if (source === undefined) return;
    this.#open.delete(incoming);
    if (!this.#park(incoming, source)) this.#free(source);
  }

  /** Resolves once fewer than MAX_HANDSHAKES connections are in flight (or on close). */
  ready(): Promise<void> {
    if (this.#inFlight() < MAX_HANDSHAKES || this.#closing) return Promise.resolve();
    this.#rare.warn(
      "flood",
      `${MAX_HANDSHAKES} handshakes in flight: turning new connections away until some end`,
    );
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Closes every connection in its handshake and wakes the accept loop (the server is closing). */
  close(): void {
    this.#closing = true;
    for (const incoming of this.#open.keys()) closeQuietly(incoming);
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Closes a connection that was never counted, parking it if its socket outlives the close. */
  #drop(incoming: Incoming, source: string | undefined): void {
    closeQuietly(incoming);
    this.#park(incoming, source);
  }

  /** Counts a closed connection until its transport handshake settles; false if it has. */
  #park(incoming: Incoming, source: string | undefined): boolean {
    if (incoming.settled) return false;
    closeQuietly(incoming);
    this.#parked.add(incoming);
    incoming.whenSettled.finally(() => {
      this.#parked.delete(incoming);
      this.#free(source);
    });
    return true;
  }

  #free(source: string | undefined): void {
    if (source !== undefined) this.#guard.leave(source);
    if (this.#inFlight() < MAX_HANDSHAKES) {
      for (const wake of this.#waiters.splice(0)) wake();
    }
  }

  /** Connections in their handshake, plus closed ones whose socket lingers. */
  #inFlight(): number {
    return this.#open.size + this.#parked.size;
  }
}
