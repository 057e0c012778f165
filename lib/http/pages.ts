/**
 * The short pages the edge answers with itself: unknown name, app offline,
 * quota full, credentials wanted, bad or oversized request. Each is a few
 * lines of HTML (or one line of text for `HEAD` and non-browsers alike, the
 * same words) that names no group, app, address or software version.
 *
 * @module
 */

import type http from "node:http";
import type http2 from "node:http2";

/** The statuses the edge itself answers with, and what each tells the user. */
export const PAGES = {
  400: ["Bad Request", "The request could not be understood."],
  401: ["Unauthorized", "This site needs a user name and password."],
  404: ["Not Found", "No site is served under this name."],
  405: ["Method Not Allowed", "This method is not served here."],
  414: ["URI Too Long", "The address asked for is too long."],
  429: ["Too Many Requests", "Too many failed logins from your address; try again later."],
  431: ["Request Header Fields Too Large", "The request's headers are too large."],
  502: ["Bad Gateway", "The site is offline or did not answer. Try again in a moment."],
  503: ["Service Unavailable", "The site is busy. Try again in a moment."],
} as const satisfies Record<number, readonly [string, string]>;

/** A status the edge answers with by itself. */
export type PageStatus = keyof typeof PAGES;

/** Headers every edge page carries: never cached, never sniffed, never framed. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
};

/** The HTML of the page for `status`. */
export function pageHtml(status: PageStatus): string {
  const [title, text] = PAGES[status];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${status} ${title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;margin:15vh auto;max-width:32rem;padding:0 1rem;color:#222}
h1{font-size:1.4rem}p{color:#555}</style></head>
<body><h1>${status} ${title}</h1><p>${text}</p></body></html>
`;
}

/**
 * The whole raw HTTP/1.1 response for `status`, for a socket that no HTTP
 * library answers on (a refused upgrade, a parse error). It closes the
 * connection: after a bad request the stream's framing cannot be trusted.
 */
export function rawPage(status: PageStatus, extra: Record<string, string> = {}): string {
  const body = pageHtml(status);
  const fields = { ...PAGE_HEADERS, ...extra, "content-length": String(utf8Length(body)) };
  let head = `HTTP/1.1 ${status} ${PAGES[status][0]}\r\nconnection: close\r\n`;
  for (const [name, value] of Object.entries(fields)) head += `${name}: ${value}\r\n`;
  return `${head}\r\n${body}`;
}

function utf8Length(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** Answers a request with the page for `status` (no body for `HEAD`). */
export function sendPage(
  req: { method?: string | undefined },
  res: http.ServerResponse | http2.Http2ServerResponse,
  status: PageStatus,
  extra: Record<string, string> = {},
): void {
  const body = pageHtml(status);
  const fields = {
    ...PAGE_HEADERS,
    ...extra,
    "content-length": String(new TextEncoder().encode(body).length),
  };
  (res as http.ServerResponse).writeHead(status, fields);
  if (req.method === "HEAD") res.end();
  else res.end(body);
}
