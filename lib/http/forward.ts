/**
 * One request's trip to its app and back: over a kept-alive HTTP/1.1
 * connection from the pool (a fresh one once if a reused one was closed by
 * the app under it, for a request that can be sent again), the answer's
 * head, then its body streamed to the user with backpressure.
 *
 * @module
 */

import type http from "node:http";
import type http2 from "node:http2";
import { getLogger } from "@logtape/logtape";
import { errorMessage } from "../util/errors.ts";
import { downstreamHeaders } from "./headers.ts";
import { sendPage } from "./pages.ts";
import type { Route } from "./routes.ts";
import type { AnyRequest } from "./request_info.ts";
import { UpstreamBusyError, type UpstreamPool } from "./upstream.ts";
import type { RequestBody, UpstreamResponse } from "./h1/connection.ts";

type AnyResponse = http.ServerResponse | http2.Http2ServerResponse;

/** Where the bytes each way are counted (the edge's request event). */
export interface ByteCounts {
  bytesIn: number;
  bytesOut: number;
}

const log = getLogger(["burrow", "http"]);
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** A request as it goes to the app. */
export interface Outgoing {
  method: string;
  /** From `requestHead`. */
  head: string;
  body: RequestBody;
}

/**
 * Sends the request over a pooled connection and streams the answer to
 * `res`; answers 502 (503 when the app is busy) when the app cannot be
 * reached or breaks HTTP before its answer began.
 */
export async function exchange(
  pool: UpstreamPool,
  route: Route,
  target: string,
  out: Outgoing,
  req: AnyRequest,
  res: AnyResponse,
  event: ByteCounts,
): Promise<void> {
  const { method, head, body } = out;
  for (let attempt = 1;; attempt++) {
    let taken: Awaited<ReturnType<UpstreamPool["take"]>>;
    try {
      taken = await pool.take(route, target);
    } catch (err) {
      log.debug(`request to ${route.id} failed: ${errorMessage(err)}`);
      return sendPage(req, res, err instanceof UpstreamBusyError ? 503 : 502);
    }
    const { conn, reused } = taken;
    // A user who goes away ends the exchange: the app's connection is not reused.
    const gone = () => {
      if (!res.writableFinished) conn.close();
    };
    res.once("close", gone);
    let answer: UpstreamResponse;
    try {
      answer = await conn.exchange(method, head, body);
    } catch (err) {
      res.off("close", gone);
      pool.release(route, target, conn);
      // A kept-alive stream the app closed just as it was reused: try a fresh one once.
      if (reused && attempt === 1 && body.kind === "none" && IDEMPOTENT.has(method)) continue;
      log.debug(`request to ${route.id} failed: ${errorMessage(err)}`);
      if (!res.headersSent) return sendPage(req, res, 502);
      return void res.destroy();
    }
    try {
      const fields = downstreamHeaders(answer.head.rawHeaders);
      const status = answer.head.status;
      if (req.httpVersion === "2.0") (res as http2.Http2ServerResponse).writeHead(status, fields);
      else (res as http.ServerResponse).writeHead(status, answer.head.reason, fields);
      for await (const piece of answer.body) {
        if (res.destroyed) break;
        event.bytesOut += piece.length;
        await writeOut(res, piece);
      }
      if (res.destroyed) return;
      res.end();
    } catch (err) {
      log.debug(`response from ${route.id} broke off: ${errorMessage(err)}`);
      res.destroy();
    } finally {
      res.off("close", gone);
      pool.release(route, target, conn);
    }
    return;
  }
}

/** The request's body as it arrives, counted into `event`. */
export async function* counted(
  req: AnyRequest,
  event: ByteCounts,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of req as AsyncIterable<Uint8Array>) {
    event.bytesIn += chunk.length;
    yield chunk;
  }
}

/** Views this small are copied and written at once; larger ones are written and waited for. */
const COPY_BELOW = 16 * 1024;

/**
 * Writes a view of the connection's buffer to the user, honouring
 * backpressure. The view is only valid until the next read, so a large one
 * is waited for until it was written (no copy); a small one is copied.
 */
function writeOut(res: AnyResponse, view: Uint8Array): Promise<void> {
  if (view.length < COPY_BELOW) {
    if ((res as http.ServerResponse).write(view.slice())) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      res.on("drain", done);
      res.on("close", done);
    });
  }
  return new Promise((resolve) => {
    const done = () => {
      res.off("close", done);
      resolve();
    };
    res.on("close", done);
    (res as http.ServerResponse).write(view, () => done());
  });
}
