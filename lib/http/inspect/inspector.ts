/**
 * The request inspector (`inspect: HOST:PORT` in a group file): it sits
 * between the tunnel and the local service of each `http` app, records
 * every request that passes (see {@linkcode Recorder}), and serves a page
 * and a JSON API to look at them and replay one.
 *
 * A tunnel stream handed to {@linkcode Inspector.handle} is parsed as
 * HTTP/1.1 (the edge speaks HTTP/1.1 to apps, one request after another on
 * a kept-alive stream); each request goes on to the app's local address
 * over a pooled connection, both bodies streamed and only their first
 * 64 KiB copied aside. Upgrades (WebSocket) are passed through raw after
 * being recorded with the app's status line.
 *
 * The page and its JSON API are in `page.ts`.
 *
 * @module
 */

import http from "node:http";
import net from "node:net";
import type { Duplex as NodeDuplex } from "node:stream";
import { getLogger } from "@logtape/logtape";
import { formatHostPort, type HostPort } from "../../util/addr.ts";
import { ListenError } from "../../util/errors.ts";
import type { Duplex } from "../../tunnel/join.ts";
import { toNodeStream } from "../node_stream.ts";
import { BodyTap, captureBytes, type RecordedRequest, Recorder } from "./recorder.ts";
import { servePage } from "./page.ts";

/** Options for {@linkcode Inspector.start}. */
export interface InspectorOptions {
  /** Where the page and API listen (loopback unless you mean otherwise). */
  bind: HostPort;
  /** Requests kept. @default 100 */
  maxRequests?: number;
  /** Bytes kept of each body. @default 65536 */
  bodyBytes?: number;
}

/** An app as the inspector forwards to it. */
export interface InspectedApp {
  name: string;
  local: HostPort;
}

/** A running inspector. */
export class Inspector {
  /** The page's address as bound. */
  readonly addr: HostPort;
  #recorder: Recorder;
  #bodyBytes: number;
  #proxy = http.createServer({ requestTimeout: 0, keepAliveTimeout: 60_000 });
  #page: Deno.HttpServer<Deno.NetAddr>;
  #apps = new WeakMap<object, InspectedApp>();
  #agents = new Map<string, http.Agent>();
  #lastApp = new Map<string, InspectedApp>();
  #sockets = new Set<NodeDuplex>();
  #log = getLogger(["burrow", "inspect"]);

  private constructor(options: InspectorOptions, page: Deno.HttpServer<Deno.NetAddr>) {
    this.#recorder = new Recorder(options.maxRequests ?? 100);
    this.#bodyBytes = options.bodyBytes ?? 64 * 1024;
    this.#page = page;
    this.addr = { hostname: page.addr.hostname, port: page.addr.port };
    // The proxy server never listens: streams are handed to it. node:http
    // closes a kept-alive connection after each response when its server is
    // not listening, so it is told it is.
    Object.defineProperty(this.#proxy, "listening", { get: () => true });
    this.#proxy.on("request", (req, res) => this.#forward(req, res));
    this.#proxy.on("upgrade", (req, socket, head) => this.#upgrade(req, socket, head));
    this.#proxy.on("clientError", (_err, socket: NodeDuplex) => socket.destroy());
  }

  /** Binds the page; rejects with `ListenError` when the address is taken. */
  static start(options: InspectorOptions): Promise<Inspector> {
    try {
      return Promise.resolve(Inspector.listen(options));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Binds the page at once; throws `ListenError` when the address is taken. */
  static listen(options: InspectorOptions): Inspector {
    const ready: { inspector?: Inspector } = {};
    let page: Deno.HttpServer<Deno.NetAddr>;
    try {
      page = Deno.serve(
        {
          hostname: options.bind.hostname,
          port: options.bind.port,
          onListen: () => {},
        },
        (req) =>
          ready.inspector ? servePage(req, ready.inspector) : new Response(null, { status: 503 }),
      );
    } catch (err) {
      throw new ListenError(
        `cannot listen for the inspector on ${formatHostPort(options.bind)}: ${
          err instanceof Error ? err.message : err
        }`,
      );
    }
    ready.inspector = new Inspector(options, page);
    return ready.inspector;
  }

  /**
   * Serves one tunnel stream of `app`: HTTP/1.1 requests, each recorded and
   * forwarded (`first`: bytes already read from it). Resolves when it closes.
   */
  handle(stream: Duplex, app: InspectedApp, first?: Uint8Array): Promise<void> {
    const socket = toNodeStream(stream, first ? { first } : {});
    this.#apps.set(socket, app);
    this.#lastApp.set(app.name, app);
    this.#sockets.add(socket);
    const closed = new Promise<void>((resolve) =>
      socket.once("close", () => {
        this.#sockets.delete(socket);
        resolve();
      })
    );
    this.#proxy.emit("connection", socket);
    return closed;
  }

  /** The records, newest first (those after id `since` only, when given). */
  requests(since = 0): RecordedRequest[] {
    return this.#recorder.list(since);
  }

  /** One record by id. */
  request(id: number): RecordedRequest | undefined {
    return this.#recorder.get(id);
  }

  /** Forgets every record. */
  clear(): void {
    this.#recorder.clear();
  }

  /** Sends a recorded request to its app again; resolves with the new record once answered. */
  async replay(id: number): Promise<RecordedRequest> {
    const original = this.#recorder.get(id);
    if (!original) throw new Error(`no request ${id}`);
    if (original.requestBody.truncated) {
      throw new Error(`request ${id} had a body larger than was kept; it cannot be replayed`);
    }
    const app = this.#lastApp.get(original.app);
    if (!app) throw new Error(`app ${original.app} is not served here any more`);
    const body = captureBytes(original.requestBody);
    const headers = original.requestHeaders.filter(([k]) => {
      const lower = k.toLowerCase();
      return lower !== "content-length" && lower !== "transfer-encoding";
    }).flat();
    headers.push("Content-Length", String(body.length));
    return await new Promise((resolve, reject) => {
      const record = this.#begin(app, original.method, original.url, "1.1", headers);
      record.replayOf = id;
      record.requestBody = { ...original.requestBody };
      const started = performance.now();
      const upReq = http.request({
        agent: this.#agent(app),
        host: app.local.hostname,
        port: app.local.port,
        method: original.method,
        path: original.url,
        headers,
        setHost: false,
      }, (upRes) => {
        record.status = upRes.statusCode ?? 0;
        record.responseHeaders = pairs(upRes.rawHeaders);
        const tap = new BodyTap(this.#bodyBytes);
        upRes.on("data", (c: Uint8Array) => tap.add(c));
        upRes.on("end", () => {
          record.responseBody = tap.capture();
          record.durationMs = performance.now() - started;
          resolve(record);
        });
        upRes.on("error", reject);
      });
      upReq.on("error", (err) => {
        record.error = err.message;
        record.durationMs = performance.now() - started;
        reject(err);
      });
      upReq.end(body);
    });
  }

  /** Stops the page and closes every stream and pooled connection. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    for (const agent of this.#agents.values()) agent.destroy();
    this.#proxy.closeAllConnections();
    await this.#page.shutdown();
  }

  #agent(app: InspectedApp): http.Agent {
    const key = formatHostPort(app.local);
    let agent = this.#agents.get(key);
    if (!agent) {
      agent = new http.Agent({ keepAlive: true, maxFreeSockets: 8, timeout: 4000 });
      this.#agents.set(key, agent);
    }
    return agent;
  }

  #begin(
    app: InspectedApp,
    method: string,
    url: string,
    httpVersion: string,
    rawHeaders: string[],
  ): RecordedRequest {
    const empty = new BodyTap(0).capture();
    return this.#recorder.begin({
      app: app.name,
      method,
      url,
      httpVersion,
      requestHeaders: pairs(rawHeaders),
      requestBody: empty,
      status: 0,
      responseHeaders: [],
      responseBody: empty,
      startedAt: Date.now(),
    });
  }

  #forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const app = this.#apps.get(req.socket);
    if (!app) return void res.destroy();
    const started = performance.now();
    const record = this.#begin(
      app,
      req.method ?? "GET",
      req.url ?? "/",
      req.httpVersion,
      req.rawHeaders,
    );
    const reqTap = new BodyTap(this.#bodyBytes);
    const resTap = new BodyTap(this.#bodyBytes);
    const finish = (error?: string) => {
      if (record.durationMs !== undefined) return;
      record.requestBody = reqTap.capture();
      record.responseBody = resTap.capture();
      record.durationMs = performance.now() - started;
      if (error !== undefined) record.error = error;
    };
    req.on("data", (c: Uint8Array) => reqTap.add(c));
    const upReq = http.request({
      agent: this.#agent(app),
      host: app.local.hostname,
      port: app.local.port,
      method: req.method,
      path: req.url,
      headers: req.rawHeaders,
      setHost: false,
    }, (upRes) => {
      record.status = upRes.statusCode ?? 0;
      record.responseHeaders = pairs(upRes.rawHeaders);
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, upRes.rawHeaders);
      upRes.on("data", (c: Uint8Array) => resTap.add(c));
      upRes.on("end", () => finish());
      upRes.on("error", (err) => {
        finish(err.message);
        res.destroy();
      });
      upRes.pipe(res);
    });
    upReq.on("error", (err) => {
      finish(err.message);
      this.#log.debug(`${app.name}: ${err.message}`);
      if (res.headersSent) return void res.destroy();
      res.writeHead(502, { "content-type": "text/plain", "content-length": "12" });
      res.end("bad gateway\n");
    });
    res.once("close", () => {
      if (!res.writableFinished) {
        upReq.destroy();
        finish("the user went away");
      }
    });
    req.pipe(upReq);
  }

  #upgrade(req: http.IncomingMessage, socket: NodeDuplex, head: Uint8Array): void {
    const app = this.#apps.get(socket);
    if (!app) return void socket.destroy();
    const started = performance.now();
    const record = this.#begin(
      app,
      req.method ?? "GET",
      req.url ?? "/",
      req.httpVersion,
      req.rawHeaders,
    );
    const local = net.connect(app.local.port, app.local.hostname);
    let headText = `${req.method} ${req.url} HTTP/1.1\r\n`;
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      headText += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
    }
    local.write(headText + "\r\n");
    if (head.length > 0) local.write(head);
    let first = true;
    local.on("data", (chunk: Uint8Array) => {
      if (!first) return;
      first = false;
      const line = new TextDecoder().decode(chunk.subarray(0, 200)).split("\r\n")[0] ?? "";
      record.status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(line)?.[1] ?? 0);
      record.durationMs = performance.now() - started;
    });
    const destroyBoth = (err?: Error) => {
      if (err && record.durationMs === undefined) record.error = err.message;
      socket.destroy();
      local.destroy();
    };
    local.on("error", destroyBoth);
    socket.on("error", destroyBoth);
    local.on("close", () => socket.end());
    socket.on("close", () => local.end());
    socket.pipe(local);
    local.pipe(socket);
  }
}

function pairs(raw: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i] as string, raw[i + 1] as string]);
  return out;
}
