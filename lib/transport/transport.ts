/**
 * The transport seam: how burrow's connections between a client and its
 * server are carried, kept apart from what is said on them. Plain TCP and
 * TLS implement it today (`tcp.ts`, `tls_listener.ts`, `tls_dialer.ts`); a
 * multiplexed transport (many streams over a few long-lived connections)
 * fits behind the same interfaces, since sessions only ever see
 * {@linkcode Conn}s.
 *
 * Server side, a {@linkcode Transport} listens; its listener hands out
 * {@linkcode Incoming} connections that are not yet secured, so the server
 * can count and bound them before spending anything on a handshake.
 * Client side, a {@linkcode Dialer} opens connections to one server.
 *
 * @module
 */

import type { HostPort } from "../util/addr.ts";
import type { ByteReader, ByteWriter } from "../protocol/frames.ts";

/** A reliable two-way byte stream with half-close, as the tunnel's copy needs it (Deno.TcpConn fits). */
export interface Duplex extends ByteReader, ByteWriter {
  /** Half-closes: the peer reads end of stream after the bytes already written. */
  closeWrite(): Promise<void>;
  /** Releases the stream (both directions). */
  close(): void;
}

/** A secured connection between a client and its server, with the peer's address. */
export interface Conn extends Duplex {
  /** Where the peer is, as the transport sees it. */
  readonly remoteAddr: Deno.Addr;
}

/** A connection just accepted, before the transport's own handshake. */
export interface Incoming {
  /** Where the peer is. */
  readonly remoteAddr: Deno.NetAddr;
  /**
   * True once a closed connection's socket is really gone. Both transports
   * here close at once (always true), but one that defers the close while
   * its handshake runs (as `Deno.listenTls` does) would say false until the
   * handshake settles, and its socket would go on costing a descriptor.
   */
  readonly settled: boolean;
  /** Resolves once {@linkcode settled} is true. */
  readonly whenSettled: Promise<void>;
  /** Completes the transport's handshake (TLS) and returns the connection to speak on. */
  secure(): Promise<Conn>;
  /** Closes it (which may linger until settled, see above). */
  close(): void;
}

/** What a server listens with. */
export interface TransportListener {
  /** The address as bound. */
  readonly addr: HostPort;
  /** The next connection; rejects with `Deno.errors.BadResource` once closed. */
  accept(): Promise<Incoming>;
  /** Stops listening. */
  close(): void;
}

/** How a server listens for its clients. */
export interface Transport {
  /** True when connections are encrypted. */
  readonly encrypted: boolean;
  /** Binds `addr`. Rejects as `Deno.listen` throws. */
  listen(addr: HostPort): Promise<TransportListener>;
}

/** How a client reaches its server. */
export interface Dialer {
  /** The server dialled. */
  readonly server: HostPort;
  /** True when connections are encrypted. */
  readonly encrypted: boolean;
  /**
   * A new connection within `timeoutMs`. `fresh` checks the server's
   * identity anew (each control session does, so a server replaced between
   * reconnects is noticed); otherwise the settled answer is reused.
   */
  dial(timeoutMs: number, fresh?: boolean): Promise<Conn>;
}

/**
 * The peer does not speak this transport (plaintext on a TLS port, say).
 * The message is the transport's own; `hint` says, from the server's side,
 * what the client should change.
 */
export class TransportMismatchError extends Error {
  /** Always `"TransportMismatchError"`. */
  override name = "TransportMismatchError";
  /** What the client should change, e.g. "sent plaintext, but this server requires TLS: ...". */
  readonly hint: string;
  /**
   * @param message The transport's own error message.
   * @param hint What the client should change.
   */
  constructor(message: string, hint: string) {
    super(message);
    this.hint = hint;
  }
}
