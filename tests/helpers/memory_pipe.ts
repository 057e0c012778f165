/**
 * An in-memory byte connection pair for transport tests: what one end
 * writes, the other reads, through a bounded buffer per direction (so a
 * reader that stops makes the writer wait, as a full TCP window does).
 * `cut()` turns the pair into a dead link that neither delivers nor fails:
 * reads and writes hang until `close()`, as a connection to a vanished host
 * does, so only a keepalive can notice.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** One direction's bytes in flight. */
class Channel {
  chunks: Uint8Array[] = [];
  size = 0;
  ended = false;
  cut = false;
  readWaiter: (() => void) | null = null;
  writeWaiter: (() => void) | null = null;
  constructor(readonly capacity: number) {}

  wakeReader(): void {
    const w = this.readWaiter;
    this.readWaiter = null;
    w?.();
  }

  wakeWriter(): void {
    const w = this.writeWaiter;
    this.writeWaiter = null;
    w?.();
  }
}

/** One end of a {@linkcode memoryPipe}; has Deno.Conn's read/write/close contract. */
export class PipeEnd {
  #in: Channel;
  #out: Channel;
  #closed = false;
  /** Bytes this end has written. */
  written = 0;

  constructor(incoming: Channel, outgoing: Channel) {
    this.#in = incoming;
    this.#out = outgoing;
  }

  async read(p: Uint8Array): Promise<number | null> {
    // Like a socket read, every read completes on a later turn of the event
    // loop, so timers still fire while bulk data flows.
    await new Promise((resolve) => setImmediate(resolve));
    const ch = this.#in;
    while (true) {
      if (this.#closed) throw new Deno.errors.BadResource("pipe end is closed");
      if (!ch.cut && ch.size > 0) break;
      if (!ch.cut && ch.ended) return null;
      await new Promise<void>((resolve) => ch.readWaiter = resolve);
    }
    let n = 0;
    while (n < p.length && ch.chunks.length > 0) {
      const head = ch.chunks[0]!;
      const take = Math.min(head.length, p.length - n);
      p.set(head.subarray(0, take), n);
      n += take;
      if (take === head.length) ch.chunks.shift();
      else ch.chunks[0] = head.subarray(take);
    }
    ch.size -= n;
    ch.wakeWriter();
    return n;
  }

  async write(p: Uint8Array): Promise<number> {
    const ch = this.#out;
    while (true) {
      if (this.#closed) throw new Deno.errors.BadResource("pipe end is closed");
      if (ch.ended) throw new Deno.errors.BrokenPipe("the peer closed the pipe");
      if (!ch.cut && ch.size < ch.capacity) break;
      await new Promise<void>((resolve) => ch.writeWaiter = resolve);
    }
    const n = Math.min(p.length, ch.capacity - ch.size);
    ch.chunks.push(p.slice(0, n));
    ch.size += n;
    this.written += n;
    ch.wakeReader();
    return n;
  }

  /** Closes this end: the peer reads end of stream, and its writes fail. */
  close(): void {
    if (this.#closed) throw new Deno.errors.BadResource("pipe end is closed");
    this.#closed = true;
    for (const ch of [this.#in, this.#out]) {
      ch.ended = true;
      ch.cut = false;
      ch.wakeReader();
      ch.wakeWriter();
    }
  }

  /** Makes the link dead in both directions, silently (see the module doc). */
  cut(): void {
    this.#in.cut = true;
    this.#out.cut = true;
  }
}

/** Two connected ends with `capacity` bytes of buffer each way. */
export function memoryPipe(capacity = 256 * 1024): [PipeEnd, PipeEnd] {
  const ab = new Channel(capacity);
  const ba = new Channel(capacity);
  return [new PipeEnd(ba, ab), new PipeEnd(ab, ba)];
}
