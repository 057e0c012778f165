/**
 * TLS as the server's transport, through `node:tls` over a `node:net`
 * listener: each connection is accepted as plain TCP, and its TLS handshake
 * runs only once the server secures it. Closing a connection destroys its
 * TCP socket at once, whatever state its handshake is in, so a peer that
 * stalls the handshake (sends nothing, or half a ClientHello) is dropped at
 * the server's first-frame deadline like any other silent peer.
 *
 * `Deno.listenTls` cannot do this: its connections are TLS from the accept
 * on, and closing one before its handshake has finished waits for the
 * handshake (denoland/deno#14547), which a stalled peer never lets finish,
 * so each one held a descriptor until the peer left. Deno 2.9.6 has no
 * server-side `startTls` to upgrade a plain connection. The price, measured
 * (one socket, 1 GiB, loopback): `node:tls` is as fast as `Deno.listenTls`
 * where the server writes, and about 0.6x where it reads (its ciphertext
 * passes through JavaScript); through the tunnel the server spends about as
 * much CPU per byte sent to the client, and up to twice as much per byte
 * received from it.
 *
 * Connections are accepted as fast as they come (Node's listener has no
 * pause); at most {@linkcode ACCEPT_QUEUE} wait for the server's
 * `accept()`, and any beyond are closed at once, which costs the server one
 * descriptor for a moment rather than one per queued peer.
 *
 * @module
 */

import * as net from "node:net";
import * as tls from "node:tls";
import type { HostPort } from "../util/addr.ts";
import type { ServerTlsMaterial } from "./server_identity.ts";
import { errorMessage } from "../util/errors.ts";
import { NodeTlsConn } from "./node_tls_conn.ts";
import {
  type Conn,
  type Incoming,
  type Transport,
  type TransportListener,
  TransportMismatchError,
} from "./transport.ts";

/** Most accepted connections waiting for the server's `accept()`; more are closed. */
export const ACCEPT_QUEUE = 256;

const settled = Promise.resolve();

/** An accepted TCP connection, TLS not yet begun. */
class TlsIncoming implements Incoming {
  // Closing destroys the socket at once: nothing ever lingers.
  readonly settled = true;
  readonly whenSettled: Promise<void> = settled;
  readonly remoteAddr: Deno.NetAddr;
  #raw: net.Socket;
  #context: tls.SecureContext;
  #socket: tls.TLSSocket | null = null;
  #closed = false;
  constructor(raw: net.Socket, context: tls.SecureContext) {
    this.#raw = raw;
    this.#context = context;
    this.remoteAddr = {
      transport: "tcp",
      hostname: unmapped(raw.remoteAddress ?? "0.0.0.0"),
      port: raw.remotePort ?? 0,
    };
  }

  async secure(): Promise<Conn> {
    if (this.#closed) throw new Deno.errors.BadResource("the connection is closed");
    const socket = new tls.TLSSocket(this.#raw, { isServer: true, secureContext: this.#context });
    this.#socket = socket;
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("secure", resolve);
        socket.once("error", reject);
        socket.once(
          "close",
          () => reject(new Deno.errors.ConnectionReset("closed in the handshake")),
        );
      });
    } catch (err) {
      this.close();
      const text = errorMessage(err);
      if (/corrupt message|InvalidContentType|InvalidMessage|wrong version/i.test(text)) {
        throw new TransportMismatchError(
          text,
          "sent plaintext, but this server requires TLS: remove tls: false from its group file",
        );
      }
      throw err;
    }
    socket.removeAllListeners("error");
    socket.removeAllListeners("close");
    return new NodeTlsConn(socket, this.#raw, this.remoteAddr);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket?.destroy();
    this.#raw.destroy();
  }
}

/** Accepts TLS connections with one certificate chain and key. */
export class TlsTransport implements Transport {
  readonly encrypted = true;
  #material: ServerTlsMaterial;
  constructor(material: ServerTlsMaterial) {
    this.#material = material;
  }

  async listen(addr: HostPort): Promise<TransportListener> {
    const { cert, key } = this.#material;
    // Deno's own check of the chain and key, with its messages: a bad pair
    // fails here, before anything is bound.
    Deno.listenTls({ hostname: addr.hostname, port: 0, cert, key }).close();
    const context = tls.createSecureContext({ cert, key });
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false });
    const queue: net.Socket[] = [];
    const waiters: Array<{ resolve: (s: net.Socket) => void; reject: (e: Error) => void }> = [];
    let closed = false;
    server.on("connection", (raw: net.Socket) => {
      raw.on("error", () => {}); // reported by the TLS socket or the next read
      raw.setNoDelay(true);
      const waiter = waiters.shift();
      if (waiter !== undefined) waiter.resolve(raw);
      else if (queue.length < ACCEPT_QUEUE) queue.push(raw);
      else raw.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: Error) => reject(listenError(err)));
      server.listen({ host: addr.hostname, port: addr.port }, () => resolve());
    });
    server.on("error", () => {}); // accept errors: the listener goes on
    const bound = server.address() as net.AddressInfo;
    return {
      addr: { hostname: unmapped(bound.address), port: bound.port },
      accept: async () => {
        if (closed) throw new Deno.errors.BadResource("the listener is closed");
        const raw = queue.shift() ??
          await new Promise<net.Socket>((resolve, reject) => waiters.push({ resolve, reject }));
        return new TlsIncoming(raw, context);
      },
      close: () => {
        if (closed) throw new Deno.errors.BadResource("the listener is already closed");
        closed = true;
        server.close();
        for (const raw of queue.splice(0)) raw.destroy();
        const gone = new Deno.errors.BadResource("the listener is closed");
        for (const w of waiters.splice(0)) w.reject(gone);
      },
    };
  }
}

/** The Deno error `Deno.listen` would have thrown for a Node.js listen error. */
function listenError(err: Error): Error {
  const code = (err as { code?: string }).code;
  const message = `${err.message}`;
  switch (code) {
    case "EADDRINUSE":
      return new Deno.errors.AddrInUse(message);
    case "EACCES":
    case "EPERM":
      return new Deno.errors.PermissionDenied(message);
    case "EADDRNOTAVAIL":
      return new Deno.errors.AddrNotAvailable(message);
    default:
      return err;
  }
}

/** `::ffff:1.2.3.4` (an IPv4 peer on a dual-stack socket) as `1.2.3.4`, as Deno shows it. */
function unmapped(host: string): string {
  return host.startsWith("::ffff:") && host.includes(".") ? host.slice(7) : host;
}
