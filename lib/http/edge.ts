/**
 * The server's shared web listeners: `--http` (plain) and `--https` (TLS),
 * each serving every `http` app by name, and `--https` also passing `tls`
 * apps through by SNI.
 *
 * The plain listener is a `node:http` server (streamed bodies both ways,
 * raw sockets for upgrades, limits on header size, strict parsing that
 * refuses a request with both `Content-Length` and `Transfer-Encoding`).
 * The TLS listener is a plain TCP listener that reads each connection's
 * ClientHello first: a name held by a `tls` app gets the raw connection
 * (the bytes read included) joined to a stream to that app; anything else
 * is joined to a loopback-only `node:http2` secure server (HTTP/2 by ALPN,
 * HTTP/1.1 otherwise, certificate by SNI), which tells the real user's
 * address by the port of the loopback connection.
 *
 * Every request then goes through the same {@linkcode EdgeProxy}.
 *
 * @module
 */

import http from "node:http";
import http2 from "node:http2";
import type { Socket } from "node:net";
import type { Duplex as NodeDuplex } from "node:stream";
import { getLogger } from "@logtape/logtape";
import { formatHostPort, type HostPort } from "../util/addr.ts";
import { ListenError } from "../util/errors.ts";
import { join } from "../tunnel/join.ts";
import { acceptLoop, closeQuietly, netReason } from "../transport/net.ts";
import type { CertStore } from "./certs.ts";
import { clientAddress } from "./headers.ts";
import { rawPage } from "./pages.ts";
import { endRaw } from "./raw_socket.ts";
import { type AuthGuard, EdgeProxy, type EdgeRequestEvent } from "./proxy.ts";
import { normalizeName, type Route, type RouteTable } from "./routes.ts";
import { peekClientHello } from "./sni.ts";
import {
  type Admit,
  ADMIT_ALL,
  type Dial,
  type UpstreamOptions,
  UpstreamPool,
} from "./upstream.ts";

/** Limits on what a user may send, against slow and oversized requests. */
export interface EdgeLimits {
  /** Request line plus headers, in bytes (431 beyond). @default 16384 */
  maxHeaderBytes: number;
  /** Request target, in bytes (414 beyond). @default 8192 */
  maxUrlBytes: number;
  /** Time for a request's headers to arrive. @default 20000 */
  headersTimeoutMs: number;
  /** An idle kept-alive connection is closed after this. @default 30000 */
  keepAliveTimeoutMs: number;
  /** Time for a TLS ClientHello to arrive on `--https`. @default 10000 */
  helloTimeoutMs: number;
}

/** The defaults of {@linkcode EdgeLimits}. */
export const DEFAULT_EDGE_LIMITS: EdgeLimits = {
  maxHeaderBytes: 16 * 1024,
  maxUrlBytes: 8 * 1024,
  headersTimeoutMs: 20_000,
  keepAliveTimeoutMs: 30_000,
  helloTimeoutMs: 10_000,
};

/** Options for {@linkcode HttpEdge.start}. */
export interface EdgeOptions {
  /** Where the plain listener binds; absent: none. */
  http?: HostPort;
  /** Where the TLS listener binds; absent: none. */
  https?: HostPort;
  /** The names and who holds them (the server keeps it up to date). */
  routes: RouteTable;
  /** Opens a stream to a route's app through the tunnel. */
  dial: Dial;
  /** Lets each request (and passed-through connection) in, or not. @default everything, one target */
  admit?: Admit;
  /** Certificates for `--https` (needed with it). */
  certs?: CertStore;
  /** Counts wrong basic-auth passwords (the server's lockout guard). */
  guard?: AuthGuard;
  /** ACME HTTP-01 answers, served on the plain listener. */
  acmeChallenge?: (token: string) => string | undefined;
  /** Called once per answered request (metrics). */
  observe?: (event: EdgeRequestEvent) => void;
  /** Called when a request is forwarded to its app. */
  opened?: (event: EdgeRequestEvent) => void;
  /** The https port users see, for `https_only` redirects. @default the bound https port */
  publicHttpsPort?: number;
  limits?: Partial<EdgeLimits>;
  upstream?: UpstreamOptions;
}

interface EdgeParts {
  plain?: http.Server;
  secure?: http2.Http2SecureServer;
  front?: Deno.TcpListener;
  pool: UpstreamPool;
}

/** The running listeners. */
export class HttpEdge {
  /** The plain listener's address as bound. */
  readonly httpAddr: HostPort | undefined;
  /** The TLS listener's address as bound. */
  readonly httpsAddr: HostPort | undefined;
  #plain: http.Server | undefined;
  #secure: http2.Http2SecureServer | undefined;
  #front: Deno.TcpListener | undefined;
  #frontConns = new Set<Deno.Conn>();
  #sockets = new Set<Socket>();
  #pool: UpstreamPool;
  #log = getLogger(["burrow", "http"]);

  private constructor(parts: EdgeParts) {
    this.#plain = parts.plain;
    this.#secure = parts.secure;
    this.#front = parts.front;
    this.#pool = parts.pool;
    // Upgraded sockets leave node's own bookkeeping: close() must still end them.
    for (const server of [parts.plain, parts.secure]) {
      server?.on("connection", (socket: Socket) => {
        // Heads and bodies go out as separate writes: Nagle would hold them.
        socket.setNoDelay?.(true);
        this.#sockets.add(socket);
        socket.once("close", () => this.#sockets.delete(socket));
      });
    }
    const plainAddr = parts.plain?.address();
    if (plainAddr && typeof plainAddr === "object") {
      this.httpAddr = { hostname: plainAddr.address, port: plainAddr.port };
    }
    if (parts.front) {
      const addr = parts.front.addr as Deno.NetAddr;
      this.httpsAddr = { hostname: addr.hostname, port: addr.port };
    }
  }

  /** Binds the listeners asked for; throws `ListenError` naming one that cannot bind. */
  static async start(options: EdgeOptions): Promise<HttpEdge> {
    const limits = { ...DEFAULT_EDGE_LIMITS, ...options.limits };
    const pool = new UpstreamPool(options.dial, options.upstream);
    const peers = new Map<number, string>();
    let httpsPort: number | undefined;
    const proxy = new EdgeProxy({
      routes: options.routes,
      pool,
      admit: options.admit ?? ADMIT_ALL,
      maxUrlBytes: limits.maxUrlBytes,
      maxHeaderBytes: limits.maxHeaderBytes,
      ...(options.guard ? { guard: options.guard } : {}),
      ...(options.acmeChallenge ? { acmeChallenge: options.acmeChallenge } : {}),
      ...(options.observe ? { observe: options.observe } : {}),
      ...(options.opened ? { opened: options.opened } : {}),
      get httpsPort() {
        return httpsPort;
      },
    });
    const parts: EdgeParts = { pool };
    try {
      if (options.http) {
        parts.plain = http.createServer(serverOptions(limits));
        wire(parts.plain, proxy, "http", (s) => clientAddress(s.remoteAddress), limits);
        await listen(parts.plain, options.http, "http");
      }
      if (options.https) {
        const certs = options.certs;
        if (!certs) throw new ListenError("https: no certificates given");
        parts.secure = http2.createSecureServer({
          ...serverOptions(limits),
          allowHTTP1: true,
          settings: { maxHeaderListSize: limits.maxHeaderBytes },
          SNICallback: (name, done) => done(null, certs.contextFor(normalizeName(name))),
        });
        const realPeer = (s: Socket) =>
          peers.get(s.remotePort ?? -1) ?? clientAddress(s.remoteAddress);
        wire(parts.secure, proxy, "https", realPeer, limits);
        await listen(parts.secure, { hostname: "127.0.0.1", port: 0 }, "https (loopback)");
        try {
          parts.front = Deno.listen({ hostname: options.https.hostname, port: options.https.port });
        } catch (err) {
          throw new ListenError(
            `cannot listen for https on ${formatHostPort(options.https)}: ${netReason(err)}`,
          );
        }
        httpsPort = options.publicHttpsPort ?? (parts.front.addr as Deno.NetAddr).port;
      }
    } catch (err) {
      parts.plain?.close();
      parts.secure?.close();
      throw err;
    }
    const edge = new HttpEdge(parts);
    if (parts.front && parts.secure) {
      const inner = parts.secure.address() as { port: number };
      edge.#serveFront(parts.front, inner.port, options, limits, peers);
    }
    return edge;
  }

  /** Closes the pooled streams of app `id` (it went offline or was replaced), or of one `target`. */
  dropUpstream(id: string, target?: string): void {
    this.#pool.drop(id, target);
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    if (this.#front) closeQuietly(this.#front);
    for (const conn of this.#frontConns) closeQuietly(conn);
    for (const socket of this.#sockets) socket.destroy();
    this.#pool.close();
    await Promise.all([this.#plain, this.#secure].map((server) => {
      if (!server) return;
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as http.Server).closeAllConnections?.();
      });
    }));
  }

  #serveFront(
    front: Deno.TcpListener,
    innerPort: number,
    options: EdgeOptions,
    limits: EdgeLimits,
    peers: Map<number, string>,
  ): void {
    const handle = async (conn: Deno.TcpConn) => {
      this.#frontConns.add(conn);
      // Small frames (HTTP/2 window updates, TLS alerts) must not wait for Nagle.
      conn.setNoDelay(true);
      const remote = clientAddress((conn.remoteAddr as Deno.NetAddr).hostname);
      try {
        const peek = await peekClientHello(conn, limits.helloTimeoutMs);
        if (!peek.ok) {
          this.#log.debug(`https: dropping ${remote}: ${peek.reason}`);
          return closeQuietly(conn);
        }
        const name = peek.hello.serverName && normalizeName(peek.hello.serverName);
        const match = name ? options.routes.match(name, "/") : undefined;
        if (match?.route.kind === "tls") {
          if (!match.live) return closeQuietly(conn);
          return await this.#passThrough(conn, match.route, peek.bytes, options);
        }
        const inner = await Deno.connect({ hostname: "127.0.0.1", port: innerPort });
        inner.setNoDelay(true);
        const port = (inner.localAddr as Deno.NetAddr).port;
        peers.set(port, remote);
        try {
          await join(conn, inner, { aToBFirst: peek.bytes });
        } finally {
          peers.delete(port);
        }
      } catch (err) {
        this.#log.debug(`https connection from ${remote} failed: ${netReason(err)}`);
        closeQuietly(conn);
      } finally {
        this.#frontConns.delete(conn);
      }
    };
    acceptLoop(front, (conn) => void handle(conn), (reason) => {
      this.#log.warn(`https accept failed: ${reason}`);
    });
  }

  /** Joins a connection for a `tls` app to a stream to it, the bytes read first. */
  async #passThrough(
    conn: Deno.TcpConn,
    route: Route,
    first: Uint8Array,
    options: EdgeOptions,
  ): Promise<void> {
    const admission = (options.admit ?? ADMIT_ALL)(route);
    if (!admission.ok) {
      this.#log.debug(`tls to ${route.id} turned away: ${admission.why}`);
      return closeQuietly(conn);
    }
    try {
      const { remoteAddr: u, localAddr: pub } = conn;
      const user = {
        source: { hostname: u.hostname, port: u.port },
        destination: { hostname: pub.hostname, port: pub.port },
      };
      const stream = await options.dial(route, admission.ticket.target, user).catch((err) => {
        this.#log.debug(`tls to ${route.id} failed: ${netReason(err)}`);
      });
      if (!stream) return closeQuietly(conn);
      await join(conn, stream, { aToBFirst: first });
    } finally {
      admission.ticket.done();
    }
  }
}

function serverOptions(limits: EdgeLimits): http.ServerOptions {
  return {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0, // uploads of any size and length
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs / 2),
  };
}

/** Hands a server's requests, upgrades and parse errors to the proxy. */
function wire(
  server: http.Server | http2.Http2SecureServer,
  proxy: EdgeProxy,
  scheme: "http" | "https",
  remoteOf: (socket: Socket) => string,
  limits: EdgeLimits,
): void {
  const log = getLogger(["burrow", "http"]);
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    proxy.request(req, res, scheme, remoteOf(req.socket)).catch((err) => {
      log.error(`request failed: ${err instanceof Error ? err.message : err}`);
      res.destroy();
    });
  });
  server.on("upgrade", (req: http.IncomingMessage, socket: Socket, head: Uint8Array) => {
    proxy.upgrade(req, socket, head, scheme, remoteOf(socket)).catch(() => socket.destroy());
  });
  server.on("connect", (_req: http.IncomingMessage, socket: Socket) => {
    endRaw(socket, rawPage(405));
  });
  server.on("clientError", (err: Error & { code?: string }, socket: NodeDuplex) => {
    if (err.code === "ECONNRESET" || !socket.writable) return socket.destroy();
    // A response under way on this connection cannot be followed by a page.
    if ((socket as unknown as { _httpMessage?: unknown })._httpMessage) return socket.destroy();
    const status = err.code === "HPE_HEADER_OVERFLOW" ? 431 : 400;
    endRaw(socket, rawPage(status));
  });
  if (scheme === "https") {
    (server as http2.Http2SecureServer).setTimeout(limits.keepAliveTimeoutMs * 4);
    guardHeaderTime(server as http2.Http2SecureServer, limits.headersTimeoutMs);
  }
}

/**
 * The HTTP/1.1 side of the `node:http2` server does not enforce a headers
 * timeout of its own: each HTTP/1.1 connection over TLS must bring a
 * request's head within `ms` of its start and of the end of each response,
 * or it is closed (slow-header attacks). HTTP/2 sessions are left alone.
 */
function guardHeaderTime(server: http2.Http2SecureServer, ms: number): void {
  const timers = new WeakMap<object, { arm(): void; clear(): void }>();
  server.on("secureConnection", (socket: Socket & { alpnProtocol?: string | false }) => {
    if (socket.alpnProtocol === "h2") return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const clear = () => clearTimeout(timer);
    const arm = () => {
      clear();
      timer = setTimeout(() => socket.destroy(), ms);
      Deno.unrefTimer(timer);
    };
    timers.set(socket, { arm, clear });
    socket.once("close", clear);
    arm();
  });
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    const guard = timers.get(req.socket);
    if (!guard) return;
    guard.clear();
    res.once("finish", guard.arm);
  });
}

function listen(
  server: http.Server | http2.Http2SecureServer,
  addr: HostPort,
  what: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error) =>
      reject(
        new ListenError(`cannot listen for ${what} on ${formatHostPort(addr)}: ${netReason(err)}`),
      );
    server.once("error", fail);
    server.listen(addr.port, addr.hostname, () => {
      server.off("error", fail);
      resolve();
    });
  });
}
