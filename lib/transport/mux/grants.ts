/**
 * The window grants a session owes its peer: streams whose reader consumed
 * enough to be worth a WINDOW frame, and the session's own window. They are
 * queued as readers consume and written just before each flush, so one
 * WINDOW frame per stream covers every read since the last write.
 *
 * @module
 */

import type { ReceiveWindow } from "./flow.ts";
import { WINDOW } from "./frame.ts";
import type { Stream } from "./stream.ts";
import type { FrameWriter } from "./writer.ts";

/** The milliseconds assumed for the round trip until a ping has measured it. */
const DEFAULT_RTT_MS = 50;
/**
 * The least round trip the windows' auto-tuning assumes. A loopback or LAN
 * ping (well under a millisecond) says little of how long a grant takes
 * through two busy event loops; below this floor the windows would stay too
 * small to keep a fast local link busy (measured: 256 KiB windows gave 60%
 * of raw loopback TCP, grown ones 80-90%).
 */
const TUNING_RTT_FLOOR_MS = 20;

/** Grants due, written before each flush of `writer`. */
export class GrantQueue {
  #due: Stream[] = [];
  #sessionDue = true;
  #recv: ReceiveWindow;
  #writer: FrameWriter;
  #srtt: () => number | undefined;

  /** `srtt` is the measured round trip, if any yet. */
  constructor(recv: ReceiveWindow, writer: FrameWriter, srtt: () => number | undefined) {
    this.#recv = recv;
    this.#writer = writer;
    this.#srtt = srtt;
  }

  /** `s`'s reader consumed enough for a grant. */
  streamDue(s: Stream): void {
    if (s.grantQueued) return;
    s.grantQueued = true;
    this.#due.push(s);
    this.#writer.wake();
  }

  /** `n` bytes of the session's window were consumed. */
  consumed(n: number): void {
    if (this.#recv.consume(n) && !this.#sessionDue) {
      this.#sessionDue = true;
      this.#writer.wake();
    }
  }

  /** Writes the WINDOW frames due. */
  flush(): void {
    const due = this.#due;
    if (due.length === 0 && !this.#sessionDue) return;
    const now = performance.now();
    const rtt = Math.max(this.#srtt() ?? DEFAULT_RTT_MS, TUNING_RTT_FLOOR_MS);
    for (let i = 0; i < due.length; i++) {
      const s = due[i]!;
      s.grantQueued = false;
      if (s.released) continue;
      const credit = s.grant(now, rtt);
      if (credit > 0) this.#writer.control(WINDOW, 0, s.id, credit);
    }
    due.length = 0;
    if (this.#sessionDue) {
      this.#sessionDue = false;
      const credit = this.#recv.grant(now, rtt);
      if (credit > 0) this.#writer.control(WINDOW, 0, 0, credit);
    }
  }
}
