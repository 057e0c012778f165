/**
 * A fixed-size buffer that drops its oldest item when full: the event log's
 * store and the traffic history's samples.
 *
 * @module
 */

/** A fixed-size buffer that drops its oldest item when full. */
export class RingBuffer<T> {
  #items: Array<T | undefined>;
  #start = 0;
  #size = 0;

  /** @param capacity How many items are kept, at least 1. */
  constructor(capacity: number) {
    this.#items = new Array(Math.max(1, Math.floor(capacity)));
  }

  /** How many items it holds. */
  get size(): number {
    return this.#size;
  }

  /** Adds an item, dropping the oldest if full. */
  push(item: T): void {
    const cap = this.#items.length;
    this.#items[(this.#start + this.#size) % cap] = item;
    if (this.#size < cap) this.#size++;
    else this.#start = (this.#start + 1) % cap;
  }

  /** The items, oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.#size; i++) {
      out.push(this.#items[(this.#start + i) % this.#items.length] as T);
    }
    return out;
  }
}
