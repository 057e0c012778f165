/**
 * What the edge reads off a request before routing it: the name asked for
 * (HTTP/2 `:authority`, else `Host`), how many `Host` fields it has, and
 * the size of its head.
 *
 * @module
 */

import type http from "node:http";
import type http2 from "node:http2";

/** A request from either protocol. */
export type AnyRequest = http.IncomingMessage | http2.Http2ServerRequest;

/** The size of a request's head as sent in HTTP/1.1 (request line and fields). */
export function headBytes(req: AnyRequest): number {
  let n = (req.method?.length ?? 0) + (req.url?.length ?? 0) + 12;
  for (const field of req.rawHeaders) n += field.length + 2;
  return n;
}

/** How many `Host` fields the request has (RFC 9112 3.2: more than one is a 400). */
export function hostFields(req: AnyRequest): number {
  let n = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if ((req.rawHeaders[i] as string).toLowerCase() === "host") n++;
  }
  return n;
}

/** The name the request asked for, as sent (HTTP/2 `:authority`, else `Host`). */
export function authorityOf(req: AnyRequest): string | undefined {
  const authority = req.headers[":authority"];
  if (typeof authority === "string" && authority !== "") return authority;
  return req.headers.host;
}
