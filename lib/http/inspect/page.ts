/**
 * The inspector's page and JSON API: `GET /` (with `app.js`, `app.css`),
 * `GET /api/requests?since=ID`, `GET /api/requests/ID`, `POST
 * /api/requests/ID/replay` and `DELETE /api/requests` (both need the header
 * `x-burrow-replay: 1`, which no other web site can make a browser send
 * without asking), only for requests whose `Host` is the inspector's own
 * address (against DNS rebinding). The page's files are real files in
 * `assets/`, imported as text.
 *
 * @module
 */

import { formatHostPort, type HostPort } from "../../util/addr.ts";
import type { RecordedRequest } from "./recorder.ts";
import css from "./assets/app.css" with { type: "text" };
import html from "./assets/index.html" with { type: "text" };
import js from "./assets/app.js" with { type: "text" };

/** What the page needs of the inspector. */
export interface InspectorApi {
  readonly addr: HostPort;
  requests(since?: number): RecordedRequest[];
  request(id: number): RecordedRequest | undefined;
  replay(id: number): Promise<RecordedRequest>;
  clear(): void;
}

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/** Answers one request to the inspector's page or API. */
export async function servePage(req: Request, inspector: InspectorApi): Promise<Response> {
  const url = new URL(req.url);
  if (!ownHost(inspector.addr, req.headers.get("host"))) {
    return text("this inspector answers only on its own address\n", 421);
  }
  if (req.method === "GET" || req.method === "HEAD") {
    switch (url.pathname) {
      case "/":
        return respond(html, "text/html; charset=utf-8");
      case "/app.js":
        return respond(js, "text/javascript; charset=utf-8");
      case "/app.css":
        return respond(css, "text/css; charset=utf-8");
      case "/api/requests": {
        const since = Number(url.searchParams.get("since") ?? 0);
        return json({ requests: inspector.requests(Number.isFinite(since) ? since : 0) });
      }
    }
    const one = /^\/api\/requests\/(\d+)$/.exec(url.pathname);
    if (one) {
      const record = inspector.request(Number(one[1]));
      return record ? json(record) : text("no such request\n", 404);
    }
    return text("not found\n", 404);
  }
  const replay = /^\/api\/requests\/(\d+)\/replay$/.exec(url.pathname);
  if (req.method === "POST" && replay) {
    if (req.headers.get("x-burrow-replay") !== "1") {
      return text("replay needs the header x-burrow-replay: 1\n", 403);
    }
    try {
      return json(await inspector.replay(Number(replay[1])));
    } catch (err) {
      return text(`${err instanceof Error ? err.message : err}\n`, 409);
    }
  }
  if (req.method === "DELETE" && url.pathname === "/api/requests") {
    if (req.headers.get("x-burrow-replay") !== "1") {
      return text("clearing needs the header x-burrow-replay: 1\n", 403);
    }
    inspector.clear();
    return new Response(null, { status: 204, headers: SECURITY_HEADERS });
  }
  return text("method not allowed\n", 405);
}

/** Whether `host` names this inspector (its bind address, or localhost on its port). */
function ownHost(addr: HostPort, host: string | null): boolean {
  if (host === null) return false;
  const port = addr.port;
  const names = [
    formatHostPort(addr),
    `localhost:${port}`,
    `127.0.0.1:${port}`,
    `[::1]:${port}`,
  ];
  return names.includes(host.toLowerCase());
}

function respond(body: string, type: string): Response {
  return new Response(body, { headers: { ...SECURITY_HEADERS, "content-type": type } });
}

function json(data: unknown): Response {
  return respond(JSON.stringify(data), "application/json; charset=utf-8");
}

function text(body: string, status: number): Response {
  return new Response(body, {
    status,
    headers: { ...SECURITY_HEADERS, "content-type": "text/plain; charset=utf-8" },
  });
}
