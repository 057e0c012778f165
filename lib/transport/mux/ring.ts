/**
 * A growable ring of bytes: where a stream keeps data that arrived before its
 * reader asked for it. It allocates nothing until the first byte and grows
 * by doubling, so an idle stream costs no buffer and a busy one reaches a
 * steady size (bounded by its receive window) and then allocates no more.
 * A ring that never grew past its first allocation gives it back once it is
 * drained: an interactive stream whose reader was busy for a moment must not
 * hold it for the rest of its life (a thousand idle streams would hold 16
 * MiB), while a bulk stream's grown ring stays.
 *
 * @module
 */

/** The first allocation: enough for a burst of interactive traffic. */
const MIN_CAPACITY = 16 * 1024;
const EMPTY = new Uint8Array(0);

/** Bytes queued in order: written at the tail, read from the head. */
export class ByteRing {
  #buf: Uint8Array = EMPTY;
  #head = 0;
  #size = 0;

  /** Bytes queued. */
  get size(): number {
    return this.#size;
  }

  /** Bytes of memory held. */
  get capacity(): number {
    return this.#buf.length;
  }

  /** Appends `src`, growing if it does not fit. */
  write(src: Uint8Array): void {
    const n = src.length;
    if (this.#size + n > this.#buf.length) this.#grow(this.#size + n);
    const cap = this.#buf.length;
    let tail = this.#head + this.#size;
    if (tail >= cap) tail -= cap;
    const first = Math.min(n, cap - tail);
    this.#buf.set(first === n ? src : src.subarray(0, first), tail);
    if (first < n) this.#buf.set(src.subarray(first), 0);
    this.#size += n;
  }

  /** Moves up to `dst.length` bytes into `dst`; returns how many. */
  read(dst: Uint8Array): number {
    const n = Math.min(dst.length, this.#size);
    if (n === 0) return 0;
    const cap = this.#buf.length;
    const first = Math.min(n, cap - this.#head);
    dst.set(this.#buf.subarray(this.#head, this.#head + first), 0);
    if (first < n) dst.set(this.#buf.subarray(0, n - first), first);
    this.#size -= n;
    this.#head = this.#size === 0 ? 0 : (this.#head + n) % cap;
    if (this.#size === 0 && cap <= MIN_CAPACITY) this.#buf = EMPTY;
    return n;
  }

  /**
   * The oldest queued bytes that lie in one piece, as a view (no copy); empty
   * if none. Writes never touch them (they go after the queued bytes, and
   * growing moves the bytes to a new buffer, leaving the old one as it was),
   * so the view stays valid until they are skipped.
   */
  peek(): Uint8Array {
    if (this.#size === 0) return EMPTY;
    const end = Math.min(this.#head + this.#size, this.#buf.length);
    return this.#buf.subarray(this.#head, end);
  }

  /** Drops the oldest `n` queued bytes (at most `size`). */
  skip(n: number): void {
    n = Math.min(n, this.#size);
    this.#size -= n;
    this.#head = this.#size === 0 ? 0 : (this.#head + n) % this.#buf.length;
    if (this.#size === 0 && this.#buf.length <= MIN_CAPACITY) this.#buf = EMPTY;
  }

  /** Drops every byte and the memory; returns how many bytes were dropped. */
  clear(): number {
    const n = this.#size;
    this.#buf = EMPTY;
    this.#head = 0;
    this.#size = 0;
    return n;
  }

  #grow(needed: number): void {
    let cap = Math.max(MIN_CAPACITY, this.#buf.length);
    while (cap < needed) cap *= 2;
    const next = new Uint8Array(cap);
    const old = this.#buf;
    const first = Math.min(this.#size, old.length - this.#head);
    next.set(old.subarray(this.#head, this.#head + first), 0);
    if (first < this.#size) next.set(old.subarray(0, this.#size - first), first);
    this.#buf = next;
    this.#head = 0;
  }
}
