/**
 * Received datagrams waiting for the application: a bounded queue that
 * drops (and counts) what does not fit, since a datagram is never waited
 * for, and hands them out in order to `receive()` callers.
 *
 * @module
 */

import { MAX_DATAGRAM } from "./frame.ts";

/** One received datagram. */
export interface Datagram {
  /** The flow it belongs to (a UDP peer, for example). */
  flowId: number;
  /** Its bytes (the receiver's own copy). */
  payload: Uint8Array;
}

/** A bounded FIFO of received datagrams. */
export class DatagramQueue {
  /** Datagrams dropped because the queue was full. */
  dropped = 0;
  #queue: Datagram[] = [];
  #waiters: Array<(d: Datagram | null) => void> = [];
  #limit: number;
  #closed = false;

  /** Holds at most `limit` datagrams. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Takes a copy of `payload` (a view into the read buffer) for a waiter or the queue. */
  push(flowId: number, payload: Uint8Array): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter({ flowId, payload: payload.slice() });
    else if (this.#queue.length < this.#limit) {
      this.#queue.push({ flowId, payload: payload.slice() });
    } else this.dropped++;
  }

  /** The next datagram, or null once closed and empty. */
  receive(): Promise<Datagram | null> {
    const next = this.#queue.shift();
    if (next !== undefined) return Promise.resolve(next);
    if (this.#closed) return Promise.resolve(null);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** No more will come: waiters get null. */
  close(): void {
    this.#closed = true;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w(null);
  }
}

/** Throws a `RangeError` if `flowId` or the size of `payload` cannot be sent. */
export function checkDatagram(flowId: number, payload: Uint8Array): void {
  if (!Number.isInteger(flowId) || flowId < 0 || flowId > 0xffff_ffff) {
    throw new RangeError(`datagram flow id ${flowId} (expected 0 to 4294967295)`);
  }
  if (payload.length > MAX_DATAGRAM) {
    throw new RangeError(`datagram of ${payload.length} bytes (at most ${MAX_DATAGRAM})`);
  }
}
