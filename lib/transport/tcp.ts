/**
 * Plain TCP as a burrow transport: no handshake of its own, connections
 * readable on the wire (the token never crosses it: logins are proofs).
 *
 * @module
 */

import type { HostPort } from "../util/addr.ts";
import { closeQuietly, dial, noDelay } from "./net.ts";
import { dialViaProxy, ProxyError } from "./proxy_dial.ts";
import type { ProxyConfig } from "./proxy_url.ts";
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
  listen(addr: HostPort): Promise<TransportListener> {
    const listener = Deno.listen({ hostname: addr.hostname, port: addr.port, transport: "tcp" });
    return Promise.resolve(wrapListener(listener, (conn) => new TcpIncoming(conn)));
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

/**
 * TCP to `server`, through `proxy` (HTTP CONNECT or SOCKS5) when there is
 * one (a `ProxyError` then names it). The client speaks first, so a proxy
 * that passes on bytes from the server before that is not to be trusted
 * with the link.
 */
export async function dialTcp(
  server: HostPort,
  timeoutMs: number,
  proxy?: ProxyConfig,
): Promise<Deno.TcpConn> {
  if (proxy === undefined) return await dial(server, timeoutMs);
  const { conn, early } = await dialViaProxy(proxy, server, timeoutMs);
  if (early.length === 0) return conn;
  closeQuietly(conn);
  throw new ProxyError(
    "protocol",
    proxy.display,
    `the proxy ${proxy.display} sent ${early.length} bytes before the server could have spoken`,
  );
}

/** Dials the server over plain TCP, directly or through a proxy. */
export class TcpDialer implements Dialer {
  readonly encrypted = false;
  readonly server: HostPort;
  #proxy: ProxyConfig | undefined;
  #dialAt: HostPort;
  /** `dialAt`: the address to connect to when it is not `server` itself. */
  constructor(server: HostPort, proxy?: ProxyConfig, dialAt?: HostPort) {
    this.server = server;
    this.#proxy = proxy;
    this.#dialAt = dialAt ?? server;
  }
  dial(timeoutMs: number): Promise<Conn> {
    return dialTcp(this.#dialAt, timeoutMs, this.#proxy);
  }
}
