/**
 * Receive-side flow control: how much a peer may send on a stream (or on
 * the whole session) and when to grant more. Credit is cumulative: the peer
 * may have sent at most `limit` bytes in all; the reader consuming bytes
 * moves the limit on by the window. A grant is due once a quarter of the
 * window has been consumed, so the sender never runs dry while a grant is in
 * flight.
 *
 * The window grows by auto-tuning, as QUIC implementations do: if the reader
 * consumed the last grant's share of the window faster than four round trips
 * would allow for it, the window, not the reader, limits the transfer, so it
 * doubles, up to its maximum. A reader that stops never grows its window, so
 * a stalled stream holds at most what it was last granted.
 *
 * @module
 */

/** Credit accounting for one direction of one stream, or of a session. */
export class ReceiveWindow {
  #limit: number;
  #received = 0;
  #consumed = 0;
  #window: number;
  #max: number;
  #epochStart = 0;
  #epochOffset = 0;

  /**
   * `initial` is what the peer may send before any grant (fixed by the
   * protocol), `window` the window to keep, growing up to `max`.
   */
  constructor(initial: number, window: number, max: number) {
    this.#limit = initial;
    this.#window = window;
    this.#max = max;
  }

  /** The current window size. */
  get window(): number {
    return this.#window;
  }

  /** Bytes received but not yet consumed. */
  get buffered(): number {
    return this.#received - this.#consumed;
  }

  /** Counts `n` bytes arriving; false if they exceed what was granted. */
  receive(n: number): boolean {
    this.#received += n;
    return this.#received <= this.#limit;
  }

  /** Counts `n` bytes consumed; true when a grant is due. */
  consume(n: number): boolean {
    this.#consumed += n;
    return this.#consumed + this.#window - this.#limit >= this.#window / 4;
  }

  /**
   * The credit to grant now (0 if none is due), growing the window first if
   * the reader keeps up with it; `now` and `rttMs` in milliseconds.
   */
  grant(now: number, rttMs: number): number {
    if (this.#consumed + this.#window - this.#limit < this.#window / 4) return 0;
    if (this.#window < this.#max && this.#epochStart > 0) {
      const fraction = (this.#consumed - this.#epochOffset) / this.#window;
      if (now - this.#epochStart < 4 * fraction * rttMs) {
        this.#window = Math.min(this.#window * 2, this.#max);
      }
    }
    this.#epochStart = now;
    this.#epochOffset = this.#consumed;
    const credit = this.#consumed + this.#window - this.#limit;
    this.#limit += credit;
    return credit;
  }
}
