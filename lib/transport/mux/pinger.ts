/**
 * Pings in flight and the round-trip time they measure. A PING carries a
 * sequence number the peer echoes in its ACK; the smoothed RTT (as TCP
 * smooths it, 1/8 weight per sample) feeds the windows' auto-tuning.
 *
 * @module
 */

/** Most pings in flight at once. */
const MAX_PINGS = 16;

interface Pending {
  start: number;
  resolve: (ms: number) => void;
  reject: (err: Error) => void;
}

/** Tracks pings and the RTT. */
export class Pinger {
  /** The smoothed round-trip time in ms, once measured. */
  srtt: number | undefined;
  #pending = new Map<number, Pending>();
  #seq = 0;

  /** Pings in flight. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /**
   * Starts a ping: `send(seq)` queues the frame. Resolves with the round
   * trip in ms.
   */
  start(send: (seq: number) => void): Promise<number> {
    if (this.#pending.size >= MAX_PINGS) {
      return Promise.reject(new RangeError(`${MAX_PINGS} pings are in flight already`));
    }
    const seq = this.#seq = (this.#seq + 1) >>> 0;
    return new Promise((resolve, reject) => {
      this.#pending.set(seq, { start: performance.now(), resolve, reject });
      send(seq);
    });
  }

  /** The peer answered ping `seq` (unknown numbers are ignored). */
  answered(seq: number): void {
    const p = this.#pending.get(seq);
    if (!p) return;
    this.#pending.delete(seq);
    const rtt = performance.now() - p.start;
    this.srtt = this.srtt === undefined ? rtt : this.srtt * 0.875 + rtt * 0.125;
    p.resolve(rtt);
  }

  /** Fails every ping in flight with `err`. */
  failAll(err: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(err);
  }
}
