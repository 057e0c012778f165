/**
 * The inspector's memory: the last requests of a group's `http` apps, each
 * with method, URL, status, duration, both sets of headers and the first
 * 64 KiB of each body (the sizes counted in full). Oldest first out once the
 * limit is reached; nothing is kept on disk.
 *
 * @module
 */

/** A body's kept start, as JSON can carry it. */
export interface BodyCapture {
  /** Bytes seen in all. */
  size: number;
  /** Whether more was seen than kept. */
  truncated: boolean;
  /** `utf8` when the kept bytes are valid UTF-8 text, else `base64`. */
  encoding: "utf8" | "base64";
  data: string;
}

/** One recorded exchange. */
export interface RecordedRequest {
  id: number;
  app: string;
  method: string;
  url: string;
  httpVersion: string;
  /** `[name, value]` pairs as received. */
  requestHeaders: [string, string][];
  requestBody: BodyCapture;
  /** 0 until the app answered (or when it never did). */
  status: number;
  responseHeaders: [string, string][];
  responseBody: BodyCapture;
  /** Milliseconds since the epoch. */
  startedAt: number;
  /** From the request's start to the response's end; undefined while under way. */
  durationMs?: number;
  /** Why the exchange failed, if it did. */
  error?: string;
  /** The id of the request this one replayed. */
  replayOf?: number;
}

/** Collects up to `limit` bytes of a body while counting all of it. */
export class BodyTap {
  #chunks: Uint8Array[] = [];
  #kept = 0;
  #size = 0;
  #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Sees one chunk (kept only up to the limit). */
  add(chunk: Uint8Array): void {
    this.#size += chunk.length;
    const room = this.#limit - this.#kept;
    if (room <= 0) return;
    const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.#chunks.push(part.slice());
    this.#kept += part.length;
  }

  /** The kept bytes, joined. */
  bytes(): Uint8Array {
    const out = new Uint8Array(this.#kept);
    let at = 0;
    for (const c of this.#chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }

  /** What was seen, as JSON can carry it. */
  capture(): BodyCapture {
    const bytes = this.bytes();
    const truncated = this.#size > this.#kept;
    try {
      // A cut may split a character: decode text without its last incomplete one.
      const data = new TextDecoder("utf-8", { fatal: true }).decode(bytes, { stream: truncated });
      return { size: this.#size, truncated, encoding: "utf8", data };
    } catch {
      let binary = "";
      for (const b of bytes) binary += String.fromCharCode(b);
      return { size: this.#size, truncated, encoding: "base64", data: btoa(binary) };
    }
  }
}

/** The body of a capture as bytes again (for replay). */
export function captureBytes(capture: BodyCapture): Uint8Array {
  if (capture.encoding === "utf8") return new TextEncoder().encode(capture.data);
  return Uint8Array.from(atob(capture.data), (c) => c.charCodeAt(0));
}

/** The last `limit` exchanges, newest last. */
export class Recorder {
  #items: RecordedRequest[] = [];
  #nextId = 1;
  #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Starts a record; it is updated in place as the exchange goes on. */
  begin(fields: Omit<RecordedRequest, "id">): RecordedRequest {
    const record = { id: this.#nextId++, ...fields };
    this.#items.push(record);
    if (this.#items.length > this.#limit) this.#items.shift();
    return record;
  }

  /** Every record kept, newest first; with `since`, only those with a larger id. */
  list(since = 0): RecordedRequest[] {
    return this.#items.filter((r) => r.id > since).reverse();
  }

  /** One record by id. */
  get(id: number): RecordedRequest | undefined {
    return this.#items.find((r) => r.id === id);
  }

  /** Forgets every record. */
  clear(): void {
    this.#items = [];
  }
}
