/**
 * A client's few mux sessions to one server, kept up: each slot dials a
 * connection, runs a session on it, and when the session ends dials again
 * after a backoff. New streams go to the live session with the fewest
 * streams, so load spreads and one slow or lossy TCP connection holds only
 * its share of the streams; a dead connection fails only its own streams.
 *
 * @module
 */

import { Backoff, type BackoffOptions, sleep } from "../../util/backoff.ts";
import { MuxConnectionError } from "./errors.ts";
import type { MuxSessionOptions } from "./options.ts";
import { MuxSession } from "./session.ts";
import type { MuxStream } from "./stream.ts";
import type { ByteConn, MuxCloseReason } from "./types.ts";

/** What a pool reports as it keeps its sessions. */
export type MuxPoolEvent =
  | { kind: "up"; slot: number }
  | { kind: "down"; slot: number; reason: MuxCloseReason }
  | { kind: "dial_failed"; slot: number; error: unknown };

/** Options for {@linkcode MuxPool}. */
export interface MuxPoolOptions {
  /** Connects (and authenticates) one connection for a session. */
  dial(): Promise<ByteConn>;
  /** Sessions to keep. @default 2 */
  size?: number;
  /** Options for every session (the role is always client). */
  session?: Omit<MuxSessionOptions, "role">;
  /** Delays between dials of one slot. */
  backoff?: BackoffOptions;
  /** Called on every session up, down and failed dial. */
  onEvent?: (event: MuxPoolEvent) => void;
  /** Called with every new session, before it takes streams (e.g. to accept the peer's). */
  onSession?: (session: MuxSession) => void;
}

/** Keeps `size` client sessions and spreads streams over them. */
export class MuxPool {
  #options: MuxPoolOptions;
  #slots: Array<MuxSession | null>;
  #waiters: Array<() => void> = [];
  #stop = new AbortController();
  #keepers: Promise<void>[];
  #lastError: unknown;

  /** Starts dialling every slot at once. */
  constructor(options: MuxPoolOptions) {
    const size = options.size ?? 2;
    if (!Number.isInteger(size) || size < 1 || size > 64) {
      throw new RangeError(`mux pool size ${size} (expected 1 to 64)`);
    }
    this.#options = options;
    this.#slots = Array.from({ length: size }, () => null);
    this.#keepers = this.#slots.map((_, i) => this.#keep(i));
  }

  /** Sessions up now. */
  get live(): number {
    return this.#slots.filter((s) => s !== null).length;
  }

  /** Streams open over all sessions. */
  get streamCount(): number {
    return this.#slots.reduce((n, s) => n + (s?.streamCount ?? 0), 0);
  }

  /**
   * Opens a stream on the live session with the fewest streams, waiting up
   * to `timeoutMs` for one to come up. Rejects with `MuxConnectionError`
   * (naming the last dial error) if none does, or once the pool is closed.
   */
  async openStream(header?: Uint8Array, timeoutMs = 10_000): Promise<MuxStream> {
    const deadline = performance.now() + timeoutMs;
    while (!this.#stop.signal.aborted) {
      const candidates = this.#slots
        .filter((s): s is MuxSession => s !== null && s.canOpen)
        .sort((a, b) => a.streamCount - b.streamCount);
      for (const session of candidates) {
        try {
          return session.openStream(header);
        } catch {
          // full or ending since we looked: try the next one
        }
      }
      const left = deadline - performance.now();
      if (left <= 0) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#waiters.push(done);
      });
    }
    const why = this.#stop.signal.aborted
      ? "the pool is closed"
      : `no mux session up within ${timeoutMs} ms`;
    const last = this.#lastError instanceof Error ? `: ${this.#lastError.message}` : "";
    throw new MuxConnectionError(`${why}${last}`, { cause: this.#lastError });
  }

  /** Closes every session (their streams fail) and stops dialling. */
  async close(): Promise<void> {
    this.#stop.abort();
    for (const s of this.#slots) s?.close();
    this.#wake();
    await Promise.all(this.#keepers);
  }

  /** Closes, then waits for every slot to stop. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #keep(slot: number): Promise<void> {
    const backoff = new Backoff(this.#options.backoff);
    const report = this.#options.onEvent ?? (() => {});
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        const conn = await this.#options.dial();
        if (signal.aborted) {
          conn.close();
          return;
        }
        const session = new MuxSession(conn, { ...this.#options.session, role: "client" });
        this.#options.onSession?.(session);
        this.#slots[slot] = session;
        backoff.reset();
        report({ kind: "up", slot });
        this.#wake();
        const reason = await session.closed;
        this.#slots[slot] = null;
        if (reason.kind === "failed") this.#lastError = reason.error;
        report({ kind: "down", slot, reason });
      } catch (error) {
        this.#lastError = error;
        report({ kind: "dial_failed", slot, error });
      }
      if (!signal.aborted) await sleep(backoff.next(), signal);
    }
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}
