/**
 * The reverse proxy at the edge: what happens to one request, whichever
 * listener and protocol it came on (HTTP/1.1 plain or over TLS, HTTP/2).
 *
 * In order: the request's own `Host` (or `:authority`) and path pick the
 * route; an ACME HTTP-01 challenge is answered first; unknown names get 404,
 * `https_only` apps on plain HTTP a 308, offline apps 502; basic auth is
 * checked (a locked-out source gets 429, wrong credentials 401 and a counted
 * failure); then the request goes to the app over a pooled stream as
 * HTTP/1.1, its body piped as it arrives, and the answer comes back the
 * same way. Nothing is buffered whole. An `Upgrade` (WebSocket and others)
 * is passed on, and after the app's `101` both sockets are joined raw.
 *
 * @module
 */

import http from "node:http";
import type http2 from "node:http2";
import type { Duplex as NodeDuplex } from "node:stream";
import { getLogger } from "@logtape/logtape";
import { BasicAuth } from "../util/basic_auth.ts";
import { downstreamHeaders, switchingHead, upstreamHeaders } from "./headers.ts";
import { type PageStatus, rawPage, sendPage } from "./pages.ts";
import { type AuthCheck, normalizeName, type Route, type RouteTable } from "./routes.ts";
import { type AnyRequest, authorityOf, headBytes, hostFields } from "./request_info.ts";
import { endRaw, pipeBoth } from "./raw_socket.ts";
import { type Admit, type Ticket, UpstreamBusyError, type UpstreamPool } from "./upstream.ts";
import { type RequestBody, requestHead } from "./h1/connection.ts";
import { counted, exchange } from "./forward.ts";
import { errorMessage } from "../util/errors.ts";

/**
 * Failed logins by source, as the server's lockout guard counts them. The
 * edge passes the user's address; the guard decides what a source is.
 */
export interface AuthGuard {
  /** Seconds `address` stays locked out, or 0. */
  lockedFor(address: string): number;
  /** Records a wrong password from `address`. */
  failed(address: string): { lockedOut: boolean };
}

/** What the edge reports about each request it answered. */
export interface EdgeRequestEvent {
  /** The name asked for, normalised (empty when it was not a name). */
  host: string;
  /** The route that answered, if any. */
  routeId?: string;
  method: string;
  status: number;
  scheme: "http" | "https";
  /** Body bytes from the user and to the user. */
  bytesIn: number;
  bytesOut: number;
  ms: number;
}

/** What the proxy needs from the edge around it. */
export interface ProxyContext {
  routes: RouteTable;
  pool: UpstreamPool;
  /** Lets each request in to its app (quota, replica), or says why not. */
  admit: Admit;
  guard?: AuthGuard;
  /** The public port of the https listener, when there is one: `https_only` redirects there. */
  httpsPort?: number | undefined;
  /** Longest request target accepted (414 beyond). */
  maxUrlBytes: number;
  /**
   * Largest request head accepted (431 beyond). The HTTP/1.1 parser holds
   * the plain listener to it already; this check holds every path to it,
   * HTTP/1.1 over TLS and HTTP/2 included.
   */
  maxHeaderBytes: number;
  /** The key authorization for an ACME HTTP-01 token being validated, if any. */
  acmeChallenge?: (token: string) => string | undefined;
  /** Called once per answered request. */
  observe?: (event: EdgeRequestEvent) => void;
  /** Called when a request is forwarded to its app (before `observe` for the same event). */
  opened?: (event: EdgeRequestEvent) => void;
}

type AnyResponse = http.ServerResponse | http2.Http2ServerResponse;

/** Where a request goes, once read. */
type Decision =
  | { kind: "page"; status: PageStatus; headers?: Record<string, string> }
  | { kind: "redirect"; location: string }
  | { kind: "text"; body: string }
  | { kind: "forward"; route: Route; path: string };

const ACME_PREFIX = "/.well-known/acme-challenge/";
const WWW_AUTHENTICATE = 'Basic realm="burrow", charset="UTF-8"';

/** One proxy per edge; it keeps the checkers of each route's credentials. */
export class EdgeProxy {
  #ctx: ProxyContext;
  #auth = new WeakMap<Route, AuthCheck>();
  #log = getLogger(["burrow", "http"]);

  constructor(ctx: ProxyContext) {
    this.#ctx = ctx;
  }

  /** Answers one request (HTTP/1.1 or HTTP/2) from `remote` that came in on `scheme`. */
  async request(
    req: AnyRequest,
    res: AnyResponse,
    scheme: "http" | "https",
    remote: string,
  ): Promise<void> {
    const started = performance.now();
    const method = req.method ?? "GET";
    const event: EdgeRequestEvent = {
      host: "",
      method,
      status: 0,
      scheme,
      bytesIn: 0,
      bytesOut: 0,
      ms: 0,
    };
    let reported = false;
    const report = () => {
      if (reported) return;
      reported = true;
      event.status = res.statusCode;
      event.ms = performance.now() - started;
      this.#ctx.observe?.(event);
    };
    res.once("finish", report);
    res.once("close", report);
    const decision = await this.#decide(req, scheme, remote, event);
    switch (decision.kind) {
      case "page":
        return sendPage(req, res, decision.status, decision.headers);
      case "redirect":
        res.writeHead(308, { location: decision.location, "content-length": "0" });
        res.end();
        return;
      case "text":
        res.writeHead(200, {
          "content-type": "text/plain",
          "content-length": String(decision.body.length),
        });
        res.end(decision.body);
        return;
      case "forward": {
        event.routeId = decision.route.id;
        const ticket = this.#admit(decision.route, event);
        if (!ticket) return sendPage(req, res, event.status as PageStatus);
        res.once("close", () => ticket.done());
        this.#ctx.opened?.(event);
        return this.#forward(req, res, scheme, remote, decision, ticket, event);
      }
    }
  }

  /**
   * A place for one request at its app, or undefined with the page's
   * status in `event` (503 over the group's quota, 502 no replica left).
   */
  #admit(route: Route, event: EdgeRequestEvent): Ticket | undefined {
    const admission = this.#ctx.admit(route);
    if (admission.ok) return admission.ticket;
    this.#log.debug(`request to ${route.id} turned away: ${admission.why}`);
    event.status = admission.status;
    return undefined;
  }

  /** Answers an HTTP/1.1 `Upgrade` request on its raw socket. */
  async upgrade(
    req: http.IncomingMessage,
    socket: NodeDuplex,
    head: Uint8Array,
    scheme: "http" | "https",
    remote: string,
  ): Promise<void> {
    socket.on("error", () => socket.destroy());
    const started = performance.now();
    const event: EdgeRequestEvent = {
      host: "",
      method: req.method ?? "GET",
      status: 0,
      scheme,
      bytesIn: 0,
      bytesOut: 0,
      ms: 0,
    };
    const decision = await this.#decide(req, scheme, remote, event);
    if (decision.kind === "page") return endRaw(socket, rawPage(decision.status, decision.headers));
    if (decision.kind === "redirect") {
      return endRaw(
        socket,
        `HTTP/1.1 308 Permanent Redirect\r\nlocation: ${decision.location}\r\n` +
          "content-length: 0\r\nconnection: close\r\n\r\n",
      );
    }
    if (decision.kind === "text") return endRaw(socket, rawPage(404));
    const route = decision.route;
    event.routeId = route.id;
    const ticket = this.#admit(route, event);
    if (!ticket) return endRaw(socket, rawPage(event.status as PageStatus));
    this.#ctx.opened?.(event);
    socket.once("close", () => {
      ticket.done();
      event.ms = performance.now() - started;
      if (event.status === 0) event.status = 502;
      this.#ctx.observe?.(event);
    });
    const upReq = http.request({
      agent: this.#ctx.pool.agent(route, ticket.target),
      method: req.method,
      path: decision.path,
      setHost: false,
      headers: upstreamHeaders(req.rawHeaders, {
        ...this.#forwardInfo(req, scheme, remote, route),
        upgrade: req.headers.upgrade ?? "",
      }),
    });
    upReq.on("upgrade", (upRes, upSocket: NodeDuplex, upHead: Uint8Array) => {
      event.status = upRes.statusCode ?? 101;
      socket.write(switchingHead(upRes.statusMessage ?? "", upRes.rawHeaders));
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      pipeBoth(socket, upSocket);
    });
    upReq.on("response", (upRes) => {
      // The app declined the upgrade: pass its answer on, delimited by close.
      event.status = upRes.statusCode ?? 502;
      const fields = downstreamHeaders(upRes.rawHeaders);
      delete fields["content-length"];
      let headText = `HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage ?? ""}\r\n`;
      for (const [name, value] of Object.entries(fields)) {
        for (const v of Array.isArray(value) ? value : [value]) headText += `${name}: ${v}\r\n`;
      }
      socket.write(`${headText}connection: close\r\n\r\n`);
      upRes.pipe(socket);
    });
    upReq.on("error", (err) => {
      this.#log.debug(`upgrade to ${route.id} failed: ${err.message}`);
      const status = err instanceof UpstreamBusyError ? 503 : 502;
      event.status = status;
      endRaw(socket, rawPage(status));
    });
    socket.once("close", () => upReq.destroy());
    upReq.end();
  }

  /** Reads the request's name, path and credentials into what to do with it. */
  async #decide(
    req: AnyRequest,
    scheme: "http" | "https",
    remote: string,
    event: EdgeRequestEvent,
  ): Promise<Decision> {
    const target = req.url ?? "/";
    if (target.length > this.#ctx.maxUrlBytes) return { kind: "page", status: 414 };
    if (headBytes(req) > this.#ctx.maxHeaderBytes) return { kind: "page", status: 431 };
    let authority = authorityOf(req);
    let path = target;
    if (/^https?:\/\//i.test(target)) {
      // absolute form (RFC 9112 3.2.2): its authority wins over Host
      try {
        const url = new URL(target);
        authority = url.host;
        path = `${url.pathname}${url.search}`;
      } catch {
        return { kind: "page", status: 400 };
      }
    } else if (!target.startsWith("/") && target !== "*") {
      return { kind: "page", status: 400 };
    }
    if (authority === undefined || hostFields(req) > 1) return { kind: "page", status: 400 };
    const host = normalizeName(authority);
    if (host === undefined) return { kind: "page", status: 404 };
    event.host = host;
    const pathOnly = path.split("?")[0] as string;
    if (scheme === "http" && pathOnly.startsWith(ACME_PREFIX) && this.#ctx.acmeChallenge) {
      const answer = this.#ctx.acmeChallenge(pathOnly.slice(ACME_PREFIX.length));
      if (answer !== undefined) return { kind: "text", body: answer };
    }
    const match = this.#ctx.routes.match(host, pathOnly);
    if (!match || match.route.kind !== "http") return { kind: "page", status: 404 };
    const route = match.route;
    if (route.httpsOnly && scheme === "http" && this.#ctx.httpsPort !== undefined) {
      const port = this.#ctx.httpsPort === 443 ? "" : `:${this.#ctx.httpsPort}`;
      return { kind: "redirect", location: `https://${host}${port}${path}` };
    }
    if (!match.live) return { kind: "page", status: 502 };
    if (route.auth) {
      const denied = await this.#checkAuth(route, req.headers.authorization, remote);
      if (denied) return denied;
    }
    return { kind: "forward", route, path };
  }

  async #checkAuth(
    route: Route,
    given: string | undefined,
    remote: string,
  ): Promise<Decision | undefined> {
    const guard = this.#ctx.guard;
    const locked = guard?.lockedFor(remote) ?? 0;
    if (locked > 0) {
      return { kind: "page", status: 429, headers: { "retry-after": String(locked) } };
    }
    let auth = this.#auth.get(route);
    if (!auth && route.auth) {
      auth = "check" in route.auth
        ? route.auth
        : new BasicAuth(route.auth.user, route.auth.password);
      this.#auth.set(route, auth);
    }
    if (auth && (await auth.check(given))) return undefined;
    // A browser's first request carries no credentials: only a wrong one counts.
    if (given !== undefined && guard?.failed(remote).lockedOut) {
      this.#log.warn(`locking out ${remote}: too many wrong passwords for ${route.id}`);
    }
    return { kind: "page", status: 401, headers: { "www-authenticate": WWW_AUTHENTICATE } };
  }

  #forwardInfo(req: AnyRequest, scheme: "http" | "https", remote: string, route: Route) {
    const info: Parameters<typeof upstreamHeaders>[1] = {
      remote,
      proto: scheme,
      host: authorityOf(req) ?? "",
      httpVersion: req.httpVersion === "2.0" ? "2.0" : req.httpVersion,
      dropAuthorization: route.auth !== undefined,
    };
    if (route.hostHeader !== undefined) info.hostHeader = route.hostHeader;
    return info;
  }

  #forward(
    req: AnyRequest,
    res: AnyResponse,
    scheme: "http" | "https",
    remote: string,
    decision: Extract<Decision, { kind: "forward" }>,
    ticket: Ticket,
    event: EdgeRequestEvent,
  ): void {
    const { route, path } = decision;
    const h2 = req.httpVersion === "2.0";
    const length = req.headers["content-length"];
    const chunked = h2
      ? length === undefined && !(req as http2.Http2ServerRequest).stream.endAfterHeaders
      : req.headers["transfer-encoding"] !== undefined;
    const method = req.method ?? "GET";
    let head: string;
    try {
      head = requestHead(
        method,
        path,
        upstreamHeaders(req.rawHeaders, {
          ...this.#forwardInfo(req, scheme, remote, route),
          chunked,
        }),
      );
    } catch {
      return sendPage(req, res, 400);
    }
    const source = counted(req, event);
    const body: RequestBody = chunked
      ? { kind: "chunked", source }
      : length !== undefined && Number(length) > 0
      ? { kind: "length", length: Number(length), source }
      : { kind: "none" };
    req.on("error", () => res.destroy());
    exchange(this.#ctx.pool, route, ticket.target, { method, head, body }, req, res, event).catch(
      (err) => {
        this.#log.debug(`request to ${route.id} failed: ${errorMessage(err)}`);
        res.destroy();
      },
    );
  }
}
