/**
 * The server's recent events (groups connecting, reconnecting, going
 * offline, and refusals), kept in a ring buffer of fixed size so a flood of
 * refused clients cannot grow memory. Listeners (the dashboard's live
 * streams) hear each event as it is added.
 *
 * @module
 */

import { RingBuffer } from "../util/ring_buffer.ts";

/** What happened. */
export type ServerEventKind = "connect" | "reconnect" | "disconnect" | "refused";

/** One entry of the event log. */
export interface ServerEvent {
  /** Increasing from 1, so a reader can ask for what is newer than what it has. */
  id: number;
  /** When, as an ISO 8601 time. */
  at: string;
  /** What happened. */
  kind: ServerEventKind;
  /** The group concerned, if any (a refusal may come before a group is known). */
  group?: string;
  /** The app concerned, for refusals of one app. */
  app?: string;
  /** The client's address, `host:port`. */
  addr?: string;
  /** For refusals: the refusal code, e.g. `auth_failed`. */
  code?: string;
  /** One line for people. Never holds a secret. */
  message: string;
}

/** How many events a server keeps by default. */
export const EVENT_LOG_SIZE = 200;

/** The server's recent events, newest last. */
export class EventLog {
  #ring: RingBuffer<ServerEvent>;
  #nextId = 1;
  #listeners = new Set<(event: ServerEvent) => void>();

  /** @param capacity How many events are kept. */
  constructor(capacity = EVENT_LOG_SIZE) {
    this.#ring = new RingBuffer(capacity);
  }

  /** Records an event and tells the listeners; returns it. */
  add(event: Omit<ServerEvent, "id" | "at">): ServerEvent {
    const full: ServerEvent = { id: this.#nextId++, at: new Date().toISOString(), ...event };
    this.#ring.push(full);
    for (const listener of this.#listeners) {
      try {
        listener(full);
      } catch {
        // A listener is a live stream that went away; it unsubscribes itself.
      }
    }
    return full;
  }

  /** Kept events with an id above `since` (all by default), oldest first. */
  list(since = 0): ServerEvent[] {
    return this.#ring.toArray().filter((e) => e.id > since);
  }

  /** Calls `listener` for every new event until the returned function is called. */
  subscribe(listener: (event: ServerEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
