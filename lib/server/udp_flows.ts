/**
 * Where a work connection's datagrams go: each UDP flow has an id, unique
 * among one session's flows, and the mux session it was opened on; a
 * datagram from the client is handed to its flow only if it came on that
 * session. Datagrams for flows that ended (or never were) are counted and
 * dropped: they are expected when a flow ends while replies are in flight.
 *
 * @module
 */

import { MAX_FLOW_ID } from "../protocol/protocol.ts";

/** One flow's route: the session it lives on and what takes its datagrams. */
interface Route {
  readonly session: unknown;
  /** Takes a datagram (a view into the read buffer, valid during the call). */
  readonly deliver: (payload: Uint8Array) => void;
}

/** The flow routes of one server session. */
export class FlowRoutes {
  /** Datagrams that named no live flow of their session. */
  unknown = 0;
  #routes = new Map<number, Route>();
  #last = 0;

  /** Flows routed now. */
  get size(): number {
    return this.#routes.size;
  }

  /** A flow id no live flow has. */
  nextId(): number {
    do this.#last = this.#last >= MAX_FLOW_ID ? 1 : this.#last + 1; while (
      this.#routes.has(this.#last)
    );
    return this.#last;
  }

  /** Routes flow `id`'s datagrams from `session` to `deliver`. */
  add(id: number, session: unknown, deliver: (payload: Uint8Array) => void): void {
    this.#routes.set(id, { session, deliver });
  }

  /** Forgets flow `id`. */
  delete(id: number): void {
    this.#routes.delete(id);
  }

  /** Hands a datagram that came on `session` to its flow, or counts it as unknown. */
  deliver(session: unknown, id: number, payload: Uint8Array): void {
    const route = this.#routes.get(id);
    if (route !== undefined && route.session === session) route.deliver(payload);
    else this.unknown++;
  }
}
