/**
 * The edge's side of one HTTP/1.1 connection to an app, over a tunnel
 * stream: it writes a request head and body, reads the response head and
 * streams the body back, one exchange at a time, and says afterwards
 * whether the connection may carry the next request.
 *
 * This is the edge's only HTTP client, so it is small and strict: one read
 * buffer per connection, bodies handed out as views of it (valid until the
 * next read), the head parsed by {@linkcode parseResponseHead}, chunked
 * bodies decoded by {@linkcode ChunkedDecoder}, interim (1xx) responses
 * skipped. `node:http`'s client did the same work at a quarter of the rate.
 *
 * @module
 */

import type { Duplex } from "../../transport/transport.ts";
import { writeAll } from "../../protocol/frames.ts";
import { FIELD_VALUE, TOKEN } from "./grammar.ts";
import {
  type BodyFraming,
  type HeadParse,
  parseResponseHead,
  type ResponseHead,
} from "./response_head.ts";
import { CHUNK_END, ChunkedDecoder, chunkHeader, LAST_CHUNK } from "./chunked.ts";

/** Bytes read from the app at a time; also the largest body view handed out. */
const READ_SIZE = 64 * 1024;

/** The app broke HTTP: the user gets 502, and the connection is dropped. */
export class UpstreamProtocolError extends Error {
  constructor(message: string) {
    super(`the app's response: ${message}`);
    this.name = "UpstreamProtocolError";
  }
}

/** A response as it arrives: its head, then its body in pieces. */
export interface UpstreamResponse {
  head: ResponseHead;
  /**
   * The body, as views of the connection's buffer, each valid until the
   * next is asked for. Ends when the body ends; throws if the app breaks
   * off or breaks the framing.
   */
  body: AsyncIterable<Uint8Array>;
}

/** What a request's body is, for the head and the framing toward the app. */
export type RequestBody =
  | { kind: "none" }
  | { kind: "length"; length: number; source: AsyncIterable<Uint8Array> }
  | { kind: "chunked"; source: AsyncIterable<Uint8Array> };

const encoder = new TextEncoder();

/** One HTTP/1.1 connection to an app. */
export class H1Connection {
  readonly stream: Duplex;
  #buf = new Uint8Array(READ_SIZE);
  #start = 0;
  #end = 0;
  #eof = false;
  #broken = false;
  #busy = false;
  #uploaded = true;
  #oneShot = false;
  /** A read started while idle, taken over by the next exchange. */
  #pending: Promise<number | null> | undefined;
  #idle = false;
  /** Exchanges completed on this connection. */
  exchanges = 0;

  constructor(stream: Duplex) {
    this.stream = stream;
  }

  /** True while it may carry another request. */
  get reusable(): boolean {
    return !this.#broken && !this.#eof && !this.#busy;
  }

  /**
   * Sends a request (`head` from {@linkcode requestHead}, whose fields
   * carry the body's framing: `Content-Length` for a `length` body,
   * `Transfer-Encoding: chunked` for a `chunked` one) and resolves with the
   * response once its head arrived. The body is sent alongside, as the app
   * reads it.
   */
  async exchange(method: string, head: string, body: RequestBody): Promise<UpstreamResponse> {
    if (!this.reusable) throw new Error("the connection is not free");
    this.#busy = true;
    try {
      await writeAll(this.stream, encoder.encode(`${head}\r\n`));
      if (body.kind !== "none") {
        this.#uploaded = false;
        // An upload that fails leaves the response to tell (the app may answer early).
        this.#sendBody(body).then(() => this.#uploaded = true, () => this.#break());
      }
      const { head: parsed, framing: bodyFraming } = await this.#readHead(method);
      return { head: parsed, body: this.#body(bodyFraming, parsed.close) };
    } catch (err) {
      this.#break();
      throw err;
    }
  }

  /** Serves one exchange only, then closes. */
  oneShot(): void {
    this.#oneShot = true;
  }

  /**
   * Marks it idle and reads, so an app that ends the connection (or sends
   * bytes nobody asked for) is noticed at once: `onDead` is called and the
   * connection is closed. {@linkcode wake} takes it back for an exchange.
   */
  sleep(onDead: () => void): void {
    this.#idle = true;
    this.#start = this.#end = 0;
    const pending = this.stream.read(this.#buf);
    this.#pending = pending;
    pending.then((n) => {
      if (!this.#idle || this.#pending !== pending) return;
      if (n === null) this.#eof = true;
      else this.#end = n;
      this.#pending = undefined;
      this.#break();
      onDead();
    }, () => {
      if (!this.#idle) return;
      this.#pending = undefined;
      this.#break();
      onDead();
    });
  }

  /** Takes an idle connection back; false if it died meanwhile. */
  wake(): boolean {
    this.#idle = false;
    return this.reusable;
  }

  /** The next read: the one started while idle, if any, else a new one into `into`. */
  #read(into: Uint8Array): Promise<number | null> {
    const pending = this.#pending;
    this.#pending = undefined;
    return pending ?? this.stream.read(into);
  }

  /** Closes the stream; an exchange under way fails. */
  close(): void {
    this.#break();
  }

  #break(): void {
    if (this.#broken) return;
    this.#broken = true;
    try {
      this.stream.close();
    } catch {
      // closed already
    }
  }

  async #sendBody(body: Exclude<RequestBody, { kind: "none" }>): Promise<void> {
    if (body.kind === "length") {
      // Exactly the declared length, whatever the user's side sends: more would
      // be a second request to the app, smuggled past the edge.
      let left = body.length;
      for await (const chunk of body.source) {
        if (chunk.length > left) throw new Error("the request body is longer than its length");
        left -= chunk.length;
        await writeAll(this.stream, chunk);
      }
      if (left > 0) throw new Error("the request body is shorter than its length");
      return;
    }
    for await (const chunk of body.source) {
      if (chunk.length === 0) continue;
      await writeAll(this.stream, chunkHeader(chunk.length));
      await writeAll(this.stream, chunk);
      await writeAll(this.stream, CHUNK_END);
    }
    await writeAll(this.stream, LAST_CHUNK);
  }

  async #readHead(method: string): Promise<Extract<HeadParse, { kind: "head" }>> {
    while (true) {
      let scanned = 0;
      while (true) {
        const parsed = parseResponseHead(
          this.#buf.subarray(this.#start),
          this.#end - this.#start,
          method,
          undefined,
          scanned,
        );
        if (parsed.kind === "error") throw new UpstreamProtocolError(parsed.message);
        if (parsed.kind === "head") {
          this.#start += parsed.size;
          // 100 Continue and 103 Early Hints: the real answer follows.
          if (parsed.head.status < 200 && parsed.head.status !== 101) break;
          return parsed;
        }
        scanned = this.#end - this.#start;
        if (!(await this.#fill())) {
          throw new UpstreamProtocolError("the app closed before a complete response head");
        }
      }
    }
  }

  /** Reads more into the buffer (compacting it first); false at the app's end of stream. */
  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buf.length) {
      throw new UpstreamProtocolError(`response head over ${this.#buf.length} bytes`);
    }
    const n = await this.#read(this.#buf.subarray(this.#end));
    if (n === null) {
      this.#eof = true;
      return false;
    }
    this.#end += n;
    return true;
  }

  /** Reads fresh bytes into the whole buffer, for body data; 0 at end of stream. */
  async #readBody(): Promise<number> {
    if (this.#start < this.#end) return this.#end - this.#start;
    this.#start = this.#end = 0;
    if (this.#eof) return 0;
    const n = await this.#read(this.#buf);
    if (n === null) {
      this.#eof = true;
      return 0;
    }
    this.#end = n;
    return n;
  }

  async *#body(framing: BodyFraming, close: boolean): AsyncGenerator<Uint8Array> {
    let completed = false;
    try {
      if (framing.kind === "length") {
        let left = framing.length;
        while (left > 0) {
          if ((await this.#readBody()) === 0) {
            throw new UpstreamProtocolError(`the app closed ${left} bytes before the body's end`);
          }
          const take = Math.min(left, this.#end - this.#start);
          const view = this.#buf.subarray(this.#start, this.#start + take);
          this.#start += take;
          left -= take;
          yield view;
        }
      } else if (framing.kind === "chunked") {
        const decoder = new ChunkedDecoder();
        const views: Uint8Array[] = [];
        while (!decoder.done) {
          if ((await this.#readBody()) === 0) {
            throw new UpstreamProtocolError("the app closed inside a chunked body");
          }
          const input = this.#buf.subarray(this.#start, this.#end);
          let used: number;
          try {
            used = decoder.push(input, (data) => views.push(data));
          } catch (err) {
            throw new UpstreamProtocolError((err as Error).message);
          }
          this.#start += used;
          // The views point into the buffer, which is not read into again until they are given out.
          for (const v of views.splice(0)) yield v;
        }
      } else if (framing.kind === "close") {
        while ((await this.#readBody()) > 0) {
          const view = this.#buf.subarray(this.#start, this.#end);
          this.#start = this.#end;
          yield view;
        }
      }
      completed = true;
    } finally {
      const clean = completed && framing.kind !== "close" && !close &&
        this.#start === this.#end && this.#uploaded && !this.#oneShot;
      if (clean) {
        this.exchanges++;
        this.#busy = false;
      } else {
        // Broken off, delimited by the close, bytes past the response, or an
        // answer before the request's body went: never reused.
        this.#break();
      }
    }
  }
}

/** A request target: visible characters and obs-text, no spaces. */
const TARGET = /^[\x21-\x7e\x80-\xff]+$/;

/**
 * The request head toward the app (request line and fields, each line
 * ending in CRLF; {@linkcode H1Connection.exchange} adds the empty line).
 * `fields` is a flat `[name, value, ...]` list. Throws on a method, target,
 * name or value that would break the framing (a CR or LF, say), so nothing
 * a user sent can start a second request.
 */
export function requestHead(method: string, path: string, fields: readonly string[]): string {
  if (!TOKEN.test(method) || !TARGET.test(path)) throw new Error("invalid request line");
  let head = `${method} ${path} HTTP/1.1\r\n`;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) {
      throw new Error(`invalid header field ${name}`);
    }
    head += `${name}: ${value}\r\n`;
  }
  return head;
}
