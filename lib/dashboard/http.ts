/**
 * The server's dashboard: an HTTP listener (off unless asked for) that
 * serves the page, its JSON API, a server-sent event stream and Prometheus
 * `/metrics`, all behind HTTP basic auth when a password is set. It reads a
 * {@linkcode ServerMonitor}; it never changes the server.
 *
 * Routes: `GET /` (the page, with `/app.js`, `/app.css`, `/favicon.svg`),
 * `GET /api/status`, `GET /api/groups`, `GET /api/events?since=ID`,
 * `GET /api/stream` (SSE: `snapshot` once a second, `event` as they happen),
 * `GET /metrics` (text format 0.0.4, or OpenMetrics when the scraper asks).
 *
 * @module
 */

import { BasicAuth } from "../util/basic_auth.ts";
import { lockedOutMessage, type SourceGuard, sourceOf } from "../util/source_guard.ts";
import { getLogger } from "@logtape/logtape";
import { formatHostPort, type HostPort, isLoopback, parseHostPort } from "../util/addr.ts";
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS, FAVICON_SVG } from "./page.ts";
import { ConfigError, ListenError } from "../util/errors.ts";
import { CONTENT_TYPES, negotiateFormat } from "./metrics.ts";
import type { ServerMonitor } from "./monitor.ts";
import { netReason } from "../transport/net.ts";
import { Secret } from "../util/secret.ts";

/**
 * Options for the server's dashboard (`startServer({ dashboard })`).
 *
 * @example
 * ```ts
 * import { startServer } from "@burrow/burrow";
 * const server = await startServer({
 *   bind: "0.0.0.0:7700",
 *   token: "s3cret",
 *   dashboard: { bind: "0.0.0.0:7500", user: "ops", password: "dashboard-pass" },
 * });
 * console.log(server.dashboardAddr); // { hostname: "0.0.0.0", port: 7500 }
 * await server.close();
 * ```
 */
export interface DashboardOptions {
  /**
   * `HOST:PORT` to serve on; port 0 picks a free one. A non-loopback host
   * needs a password.
   */
  bind: string;
  /**
   * The basic-auth user name, checked when a password is set.
   *
   * @default {"admin"}
   */
  user?: string;
  /** The basic-auth password; without one the dashboard is open (loopback only). */
  password?: string | Secret;
}

/** Live event streams served at once; more get 503 and the page falls back to polling. */
export const MAX_STREAMS = 16;

/** The dashboard's options, checked. */
export interface DashboardSettings {
  bind: HostPort;
  user: string;
  password?: Secret;
}

/**
 * Checks dashboard options. A non-loopback bind without a password is a
 * `ConfigError`: the dashboard shows client addresses and traffic to whoever
 * reaches it.
 */
export function checkDashboardOptions(options: DashboardOptions): DashboardSettings {
  const bind = parseHostPort(options.bind);
  if (typeof bind === "string") throw new ConfigError(`dashboard.bind: ${bind}`);
  const password = typeof options.password === "string"
    ? new Secret(options.password)
    : options.password;
  if (password !== undefined && password.reveal() === "") {
    throw new ConfigError("dashboard.password: must not be empty");
  }
  const user = options.user ?? "admin";
  if (user === "" || user.includes(":")) {
    throw new ConfigError("dashboard.user: must be a non-empty name without a colon");
  }
  if (password === undefined && !isLoopback(bind.hostname)) {
    throw new ConfigError(
      `dashboard: refusing to serve on ${
        formatHostPort(bind)
      } without a password, since anyone who can reach it would see every client and its traffic; ` +
        "set --dashboard-password (or dashboard.password, or BURROW_DASHBOARD_PASSWORD), or bind it to 127.0.0.1",
    );
  }
  const settings: DashboardSettings = { bind, user };
  if (password !== undefined) settings.password = password;
  return settings;
}

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

const encoder = new TextEncoder();

/** A running dashboard. */
export class Dashboard {
  /** The address as bound. */
  readonly addr: HostPort;
  #server: Deno.HttpServer<Deno.NetAddr>;
  #monitor: ServerMonitor;
  #auth: BasicAuth | undefined;
  #streams = new Set<() => void>();
  #log = getLogger(["burrow", "dashboard"]);
  #guard: SourceGuard | undefined;

  /**
   * Binds at once; throws `ListenError` if the address cannot be bound.
   * Wrong passwords count as failed logins in `guard` (the server's own, so
   * a source guessing here and at the control port is locked out once).
   */
  constructor(settings: DashboardSettings, monitor: ServerMonitor, guard?: SourceGuard) {
    this.#monitor = monitor;
    this.#guard = guard;
    if (settings.password !== undefined) {
      this.#auth = new BasicAuth(settings.user, settings.password);
    }
    try {
      this.#server = Deno.serve({
        hostname: settings.bind.hostname,
        port: settings.bind.port,
        onListen: () => {},
        onError: (err) => {
          this.#log.error(`dashboard request failed: ${netReason(err)}`);
          return new Response("internal error", { status: 500 });
        },
      }, (request, info) => this.#handle(request, info.remoteAddr.hostname));
    } catch (err) {
      throw new ListenError(
        `cannot listen for the dashboard on ${formatHostPort(settings.bind)}: ${netReason(err)}`,
      );
    }
    this.addr = { hostname: this.#server.addr.hostname, port: this.#server.addr.port };
    this.#log.info(
      `dashboard on http://${formatHostPort(this.addr)}/${this.#auth ? "" : " (no password)"}`,
    );
  }

  /** Ends the live streams and stops listening. */
  async close(): Promise<void> {
    for (const end of [...this.#streams]) end();
    await this.#server.shutdown();
  }

  async #handle(request: Request, from: string): Promise<Response> {
    if (this.#auth) {
      const source = sourceOf(from);
      const locked = this.#guard?.lockedFor(source) ?? 0;
      if (locked > 0) {
        return respond(
          `${lockedOutMessage(source, locked)}\n`,
          429,
          "text/plain; charset=utf-8",
          { "retry-after": String(locked) },
        );
      }
      const given = request.headers.get("authorization");
      if (!(await this.#auth.check(given))) {
        // A browser's first request carries no credentials: only a wrong one is a
        // failure. HTTP requests are cheap to send in parallel, so no delay here:
        // the lockout is what stops guessing.
        if (given !== null && this.#guard) {
          const { lockedOut } = this.#guard.failed(source);
          this.#monitor.refused("auth_failed", "dashboard: wrong password", { addr: from });
          if (lockedOut) {
            this.#log.warn(`locking out ${source}: too many wrong dashboard passwords`);
          }
        }
        return respond("authentication required\n", 401, "text/plain; charset=utf-8", {
          "www-authenticate": 'Basic realm="burrow", charset="UTF-8"',
        });
      }
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return respond("method not allowed\n", 405, "text/plain; charset=utf-8", {
        allow: "GET, HEAD",
      });
    }
    const url = new URL(request.url);
    const monitor = this.#monitor;
    switch (url.pathname) {
      case "/":
        return respond(DASHBOARD_HTML, 200, "text/html; charset=utf-8");
      case "/app.js":
        return respond(DASHBOARD_JS, 200, "text/javascript; charset=utf-8");
      case "/app.css":
        return respond(DASHBOARD_CSS, 200, "text/css; charset=utf-8");
      case "/favicon.svg":
        return respond(FAVICON_SVG, 200, "image/svg+xml");
      case "/api/status":
        return json(monitor.status());
      case "/api/groups":
        return json({ groups: monitor.groups() });
      case "/api/events": {
        const since = Number(url.searchParams.get("since") ?? 0);
        return json({ events: monitor.events.list(Number.isFinite(since) ? since : 0) });
      }
      case "/api/stream":
        return this.#stream();
      case "/metrics": {
        const format = negotiateFormat(request.headers.get("accept"));
        return respond(monitor.metrics(format), 200, CONTENT_TYPES[format]);
      }
      default:
        return respond("not found\n", 404, "text/plain; charset=utf-8");
    }
  }

  /** Server-sent events: a `snapshot` at once and every second, each new `event` as it comes. */
  #stream(): Response {
    if (this.#streams.size >= MAX_STREAMS) {
      return respond("too many live streams; poll /api/groups instead\n", 503, "text/plain");
    }
    const monitor = this.#monitor;
    let end = () => {};
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        const send = (type: string, data: unknown) => {
          try {
            controller.enqueue(encoder.encode(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`));
          } catch {
            end();
          }
        };
        const snapshot = () =>
          send("snapshot", { status: monitor.status(), groups: monitor.groups() });
        const timer = setInterval(snapshot, 1000);
        const unsubscribe = monitor.events.subscribe((event) => send("event", event));
        end = () => {
          if (!this.#streams.delete(end)) return;
          clearInterval(timer);
          unsubscribe();
          try {
            controller.close();
          } catch {
            // already closed by the browser going away
          }
        };
        this.#streams.add(end);
        controller.enqueue(encoder.encode("retry: 2000\n\n"));
        snapshot();
      },
      cancel: () => end(),
    });
    return respond(body, 200, "text/event-stream; charset=utf-8");
  }
}

function respond(
  body: BodyInit,
  status: number,
  type: string,
  extra: Record<string, string> = {},
): Response {
  return new Response(body, {
    status,
    headers: { ...SECURITY_HEADERS, "content-type": type, ...extra },
  });
}

function json(data: unknown): Response {
  return respond(JSON.stringify(data), 200, "application/json; charset=utf-8");
}
