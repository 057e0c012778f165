/**
 * A decoder for the chunked transfer coding (RFC 9112 7.1), fed the bytes
 * as they arrive. Data comes out as views of the input (no copy); sizes,
 * extensions and trailers are bounded, and anything malformed is an error
 * rather than a guess, since a lenient decoder behind a strict one is how
 * responses get smuggled.
 *
 * @module
 */

import { FIELD_VALUE, TOKEN } from "./grammar.ts";

/** A malformed chunked body. */
export class ChunkedError extends Error {
  constructor(message: string) {
    super(`chunked body: ${message}`);
    this.name = "ChunkedError";
  }
}

/** Longest chunk-size line, extensions included. */
const MAX_SIZE_LINE = 4096;
/** Most bytes of trailer fields. */
const MAX_TRAILERS = 16 * 1024;
/** Largest chunk: 2^48 bytes is past any body a tunnel carries. */
const MAX_HEX_DIGITS = 12;

const CR = 13;
const LF = 10;

type State = "size" | "data" | "data_cr" | "data_lf" | "trailer" | "done";

/** Decodes one chunked body. */
export class ChunkedDecoder {
  #state: State = "size";
  #line: number[] = [];
  #left = 0;
  #trailerBytes = 0;

  /** True once the last chunk and the trailers have been read. */
  get done(): boolean {
    return this.#state === "done";
  }

  /**
   * Decodes `input`, handing each run of data to `emit` (a view of `input`,
   * valid until `push` is called again). Returns the bytes consumed: all of
   * `input`, or fewer once the body ended (the rest is not part of it).
   * Throws {@linkcode ChunkedError}.
   */
  push(input: Uint8Array, emit: (data: Uint8Array) => void): number {
    let i = 0;
    const n = input.length;
    while (i < n && this.#state !== "done") {
      switch (this.#state) {
        case "data": {
          const take = Math.min(this.#left, n - i);
          emit(input.subarray(i, i + take));
          i += take;
          this.#left -= take;
          if (this.#left === 0) this.#state = "data_cr";
          break;
        }
        case "data_cr":
          if (input[i++] !== CR) throw new ChunkedError("chunk data not followed by CRLF");
          this.#state = "data_lf";
          break;
        case "data_lf":
          if (input[i++] !== LF) throw new ChunkedError("chunk data not followed by CRLF");
          this.#state = "size";
          break;
        case "size":
        case "trailer":
          i = this.#lineByte(input, i);
          break;
      }
    }
    return i;
  }

  /** Collects a size or trailer line; acts on it at its LF. */
  #lineByte(input: Uint8Array, at: number): number {
    let i = at;
    while (i < input.length) {
      const b = input[i++] as number;
      if (b !== LF) {
        this.#line.push(b);
        if (this.#state === "size" && this.#line.length > MAX_SIZE_LINE) {
          throw new ChunkedError("chunk-size line too long");
        }
        if (this.#state === "trailer" && ++this.#trailerBytes > MAX_TRAILERS) {
          throw new ChunkedError("trailers too long");
        }
        continue;
      }
      if (this.#line.pop() !== CR) throw new ChunkedError("a line ends in LF without CR");
      const line = String.fromCharCode(...this.#line);
      this.#line = [];
      if (this.#state === "size") this.#sizeLine(line);
      else if (line === "") this.#state = "done";
      else if (!isTrailerField(line)) throw new ChunkedError("malformed trailer field");
      return i;
    }
    return i;
  }

  #sizeLine(line: string): void {
    const semi = line.indexOf(";");
    const hex = (semi === -1 ? line : line.slice(0, semi)).replace(/[ \t]+$/, "");
    if (!/^[0-9A-Fa-f]+$/.test(hex) || hex.replace(/^0+(?=.)/, "").length > MAX_HEX_DIGITS) {
      throw new ChunkedError(`bad chunk size "${hex.slice(0, 20)}"`);
    }
    if (semi !== -1 && !/^[\t\x20-\x7e\x80-\xff]*$/.test(line.slice(semi))) {
      throw new ChunkedError("bad chunk extension");
    }
    const size = parseInt(hex, 16);
    if (size === 0) this.#state = "trailer";
    else {
      this.#left = size;
      this.#state = "data";
    }
  }
}

/** `name:value`, as a trailer field must be. */
function isTrailerField(line: string): boolean {
  const colon = line.indexOf(":");
  return colon > 0 && TOKEN.test(line.slice(0, colon)) && FIELD_VALUE.test(line.slice(colon + 1));
}

const HEX = "0123456789abcdef";

/** The chunk header for `size` bytes of data (`SIZE\r\n`). */
export function chunkHeader(size: number): Uint8Array {
  let text = "";
  let v = size;
  do {
    text = HEX[v % 16] + text;
    v = Math.floor(v / 16);
  } while (v > 0);
  return new TextEncoder().encode(`${text}\r\n`);
}

/** The CRLF after a chunk's data. */
export const CHUNK_END: Uint8Array = new Uint8Array([CR, LF]);

/** The last chunk and an empty trailer section. */
export const LAST_CHUNK: Uint8Array = new TextEncoder().encode("0\r\n\r\n");
