/**
 * The head of an HTTP/1.1 response from an app, parsed strictly (RFC 9112):
 * the status line, then header fields up to the empty line, within a size
 * and count limit. What it refuses, it refuses with a reason, and the edge
 * answers the user 502: an app cannot smuggle a second response past the
 * edge with both `Content-Length` and `Transfer-Encoding`, conflicting
 * lengths, obsolete line folding, or bytes that are not allowed in a field.
 *
 * The body's framing follows from the head and the request's method
 * (RFC 9112 6.3): none, a length, chunked, or until the app closes.
 *
 * @module
 */

import { FIELD_VALUE, TOKEN } from "./grammar.ts";

/** A parsed response head. */
export interface ResponseHead {
  /** 1 for HTTP/1.1, 0 for HTTP/1.0. */
  minor: 0 | 1;
  status: number;
  reason: string;
  /** Names and values, alternating, as received (names keep their case). */
  rawHeaders: string[];
  /** The app asked to close the connection after this response (or spoke HTTP/1.0 without keep-alive). */
  close: boolean;
}

/** How the body after a head is delimited. */
export type BodyFraming =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  | { kind: "close" };

/** What {@linkcode parseResponseHead} found in the bytes so far. */
export type HeadParse =
  | { kind: "incomplete" }
  | { kind: "error"; message: string }
  | { kind: "head"; head: ResponseHead; framing: BodyFraming; size: number };

/** Limits on a response head. */
export interface HeadLimits {
  /** Bytes of the status line and fields together. @default 65536 */
  maxBytes: number;
  /** Header fields. @default 256 */
  maxFields: number;
}

/** The defaults of {@linkcode HeadLimits}. */
export const DEFAULT_HEAD_LIMITS: HeadLimits = { maxBytes: 64 * 1024, maxFields: 256 };

const CR = 13;
const LF = 10;
const STATUS_LINE = /^HTTP\/1\.([01]) ([0-9]{3}) ?([\t\x20-\x7e\x80-\xff]*)$/;
const latin1 = new TextDecoder("latin1");

/**
 * Parses a response head from `bytes[0..end)`. `method` is the request's,
 * since a response to HEAD has no body whatever its fields say. `scanned`:
 * bytes already looked at by an earlier call that found the head
 * incomplete, so a head arriving byte by byte costs linear time.
 */
export function parseResponseHead(
  bytes: Uint8Array,
  end: number,
  method: string,
  limits: HeadLimits = DEFAULT_HEAD_LIMITS,
  scanned = 0,
): HeadParse {
  const stop = headEnd(bytes, Math.max(0, scanned - 3), Math.min(end, limits.maxBytes + 4));
  if (stop === BARE_LF) return { kind: "error", message: "a line ends in LF without CR" };
  if (stop < 0) {
    return end >= limits.maxBytes + 4
      ? { kind: "error", message: `response head over ${limits.maxBytes} bytes` }
      : { kind: "incomplete" };
  }
  const lines = latin1.decode(bytes.subarray(0, stop)).split("\r\n");
  const status = STATUS_LINE.exec(lines[0] ?? "");
  if (!status) return { kind: "error", message: "malformed status line" };
  if (lines.length - 1 > limits.maxFields) {
    return { kind: "error", message: `more than ${limits.maxFields} header fields` };
  }
  const rawHeaders: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    const colon = line.indexOf(":");
    if (colon <= 0) return { kind: "error", message: "malformed header field" };
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return { kind: "error", message: "malformed header field name" };
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!FIELD_VALUE.test(value)) return { kind: "error", message: `bad bytes in ${name}` };
    rawHeaders.push(name, value);
  }
  const minor = status[1] === "1" ? 1 : 0;
  const code = Number(status[2]);
  if (code < 100) return { kind: "error", message: `status ${code}` };
  const framing = bodyFraming(rawHeaders, code, method);
  if (typeof framing === "string") return { kind: "error", message: framing };
  const connection = tokens(rawHeaders, "connection");
  const close = connection.includes("close") || (minor === 0 && !connection.includes("keep-alive"));
  return {
    kind: "head",
    head: { minor, status: code, reason: status[3] ?? "", rawHeaders, close },
    framing,
    size: stop + 4,
  };
}

/** The framing of the body (RFC 9112 6.3), or why the head is refused. */
function bodyFraming(raw: string[], status: number, method: string): BodyFraming | string {
  const te = tokens(raw, "transfer-encoding");
  const lengths = values(raw, "content-length").flatMap((v) => v.split(",").map((s) => s.trim()));
  if (te.length > 0 && lengths.length > 0) {
    return "both Transfer-Encoding and Content-Length";
  }
  if (method === "HEAD" || (status >= 100 && status < 200) || status === 204 || status === 304) {
    return { kind: "none" };
  }
  if (te.length > 0) {
    // chunked must be the last coding; anything else is delimited by the close.
    if (te.indexOf("chunked") !== -1 && te.indexOf("chunked") !== te.length - 1) {
      return "chunked is not the last transfer coding";
    }
    return te[te.length - 1] === "chunked" ? { kind: "chunked" } : { kind: "close" };
  }
  if (lengths.length > 0) {
    const first = lengths[0] as string;
    if (!/^[0-9]{1,15}$/.test(first) || lengths.some((l) => l !== first)) {
      return "invalid Content-Length";
    }
    return { kind: "length", length: Number(first) };
  }
  return { kind: "close" };
}

/** Every value of field `name` (any case). */
function values(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === name) out.push(raw[i + 1] as string);
  }
  return out;
}

/** The comma-separated tokens of field `name`, lower-cased. */
function tokens(raw: string[], name: string): string[] {
  return values(raw, name).flatMap((v) => v.split(",")).map((t) => t.trim().toLowerCase())
    .filter((t) => t !== "");
}

const BARE_LF = -2;

/**
 * The offset of the CRLFCRLF that ends the head (searched from `from`), -1
 * when it has not come yet, or {@linkcode BARE_LF}: an LF not after a CR is
 * refused rather than taken as a line end, as a parser behind the app might
 * read it otherwise.
 */
function headEnd(bytes: Uint8Array, from: number, end: number): number {
  for (let i = from; i < end; i++) {
    if (bytes[i] !== LF) continue;
    if (i === 0 || bytes[i - 1] !== CR) return BARE_LF;
    if (i >= 3 && bytes[i - 2] === LF && bytes[i - 3] === CR) return i - 3;
  }
  return -1;
}
