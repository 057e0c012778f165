/**
 * TLS as the server's transport: `Deno.listenTls` with the server's
 * identity. Each accepted connection's handshake starts at once and is
 * watched, because Deno defers closing a TLS connection until its handshake
 * settles: a peer that stalls it keeps the socket open however early the
 * server gives up, and the server must go on counting it (see
 * `lib/server/handshakes.ts`).
 *
 * @module
 */

import type { HostPort } from "../util/addr.ts";
import type { ServerTlsMaterial } from "./server_identity.ts";
import { wrapListener } from "./tcp.ts";
import { errorMessage } from "../util/errors.ts";
import {
  type Conn,
  type Incoming,
  type Transport,
  type TransportListener,
  TransportMismatchError,
} from "./transport.ts";

/** An accepted TLS connection, its handshake under way. */
class TlsIncoming implements Incoming {
  settled = false;
  readonly whenSettled: Promise<void>;
  #conn: Deno.TlsConn;
  #handshake: Promise<Deno.TlsHandshakeInfo>;
  constructor(conn: Deno.TlsConn) {
    this.#conn = conn;
    this.#handshake = conn.handshake();
    this.whenSettled = this.#handshake.then(() => {}, () => {}).finally(() => {
      this.settled = true;
    });
  }
  get remoteAddr(): Deno.NetAddr {
    return this.#conn.remoteAddr as Deno.NetAddr;
  }
  async secure(): Promise<Conn> {
    try {
      await this.#handshake;
    } catch (err) {
      const text = errorMessage(err);
      if (/corrupt message|InvalidContentType|InvalidMessage/i.test(text)) {
        throw new TransportMismatchError(
          text,
          "sent plaintext, but this server requires TLS: remove tls: false from its group file",
        );
      }
      throw err;
    }
    return this.#conn;
  }
  close(): void {
    this.#conn.close();
  }
}

/** Accepts TLS connections with one certificate chain and key. */
export class TlsTransport implements Transport {
  readonly encrypted = true;
  #material: ServerTlsMaterial;
  constructor(material: ServerTlsMaterial) {
    this.#material = material;
  }
  listen(addr: HostPort): TransportListener {
    const listener = Deno.listenTls({
      hostname: addr.hostname,
      port: addr.port,
      cert: this.#material.cert,
      key: this.#material.key,
    });
    return wrapListener(listener, (conn) => new TlsIncoming(conn));
  }
}
