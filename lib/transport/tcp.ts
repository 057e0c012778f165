/**
 * Plain TCP as a burrow transport: no handshake of its own, connections
 * readable on the wire (the token never crosses it: logins are proofs).
 *
 * @module
 */

import type { HostPort } from "../util/addr.ts";
import { dial, noDelay } from "./net.ts";
import type { Conn, Dialer, Incoming, Transport, TransportListener } from "./transport.ts";

const settled = Promise.resolve();

/** An accepted TCP connection: nothing to secure. */
class TcpIncoming implements Incoming {
  readonly settled = true;
  readonly whenSettled: Promise<void> = settled;
  #conn: Deno.Conn;
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }
  get remoteAddr(): Deno.NetAddr {
    return this.#conn.remoteAddr as Deno.NetAddr;
  }
  secure(): Promise<Conn> {
    noDelay(this.#conn);
    return Promise.resolve(this.#conn);
  }
  close(): void {
    this.#conn.close();
  }
}

/** Accepts plain TCP connections. */
export class TcpTransport implements Transport {
  readonly encrypted = false;
  listen(addr: HostPort): TransportListener {
    const listener = Deno.listen({ hostname: addr.hostname, port: addr.port, transport: "tcp" });
    return wrapListener(listener, (conn) => new TcpIncoming(conn));
  }
}

/** A transport listener over a Deno listener, wrapping each accepted connection. */
export function wrapListener<C extends Deno.Conn>(
  listener: Deno.Listener<C, Deno.NetAddr>,
  wrap: (conn: C) => Incoming,
): TransportListener {
  const local = listener.addr;
  return {
    addr: { hostname: local.hostname, port: local.port },
    accept: async () => wrap(await listener.accept()),
    close: () => listener.close(),
  };
}

/** Dials the server over plain TCP. */
export class TcpDialer implements Dialer {
  readonly encrypted = false;
  readonly server: HostPort;
  constructor(server: HostPort) {
    this.server = server;
  }
  dial(timeoutMs: number): Promise<Conn> {
    return dial(this.server, timeoutMs);
  }
}
