/**
 * Reading the name a TLS client asks for (SNI) before anything decrypts the
 * connection, so that the `--https` listener can pass a `tls` app's
 * connections through untouched and terminate the others.
 *
 * The ClientHello is read from the TLS records as they come (it may span
 * several records, and one read may bring part of a record), with a limit
 * on its size and on the time it may take. Every byte read is kept and
 * handed back, so whoever takes the connection next sees it from its first
 * byte.
 *
 * @module
 */

/** What a ClientHello tells before the handshake. */
export interface ClientHello {
  /** The `server_name` (host_name) asked for, lower case; absent when none was sent. */
  serverName?: string;
  /** The ALPN protocols offered, in the client's order. */
  alpn: string[];
}

/** The result of parsing the bytes read so far. */
export type HelloParse =
  | { status: "more" }
  | { status: "invalid"; reason: string }
  | { status: "done"; hello: ClientHello };

/** Largest ClientHello accepted (post-quantum key shares make them ~2 KiB today). */
export const MAX_HELLO_BYTES = 32 * 1024;

const RECORD_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const EXT_ALPN = 0x0010;
const decoder = new TextDecoder();

/**
 * Parses the start of a TLS connection. `more` means the ClientHello is not
 * complete yet; `invalid` that this is not TLS (or not a ClientHello).
 */
export function parseClientHello(bytes: Uint8Array): HelloParse {
  // Reassemble the handshake message from as many records as needed.
  const handshake: Uint8Array[] = [];
  let have = 0;
  let need = -1;
  let off = 0;
  while (true) {
    if (bytes.length - off < 5) return { status: "more" };
    if (bytes[off] !== RECORD_HANDSHAKE) {
      return { status: "invalid", reason: "not a TLS handshake" };
    }
    if (bytes[off + 1] !== 3) return { status: "invalid", reason: "not a TLS record version" };
    const length = u16(bytes, off + 3);
    if (length === 0 || length > 16384 + 2048) {
      return { status: "invalid", reason: "bad TLS record length" };
    }
    const end = off + 5 + length;
    handshake.push(bytes.subarray(off + 5, Math.min(end, bytes.length)));
    have += Math.min(end, bytes.length) - (off + 5);
    if (need < 0 && have >= 4) {
      const first = concat(handshake, 4);
      if (first[0] !== HANDSHAKE_CLIENT_HELLO) {
        return { status: "invalid", reason: "not a ClientHello" };
      }
      need = 4 + ((first[1] as number) << 16 | u16(first, 2));
      if (need > MAX_HELLO_BYTES) return { status: "invalid", reason: "ClientHello too large" };
    }
    if (need >= 0 && have >= need) return parseHello(concat(handshake, need).subarray(4));
    if (end > bytes.length) return { status: "more" };
    off = end;
  }
}

/** Parses a ClientHello body (after its 4-byte handshake header). */
function parseHello(body: Uint8Array): HelloParse {
  const bad = (reason: string): HelloParse => ({ status: "invalid", reason });
  let p = 2 + 32; // legacy_version, random
  if (p + 1 > body.length) return bad("truncated ClientHello");
  p += 1 + (body[p] as number); // session id
  if (p + 2 > body.length) return bad("truncated ClientHello");
  p += 2 + u16(body, p); // cipher suites
  if (p + 1 > body.length) return bad("truncated ClientHello");
  p += 1 + (body[p] as number); // compression methods
  const hello: ClientHello = { alpn: [] };
  if (p === body.length) return { status: "done", hello }; // no extensions at all
  if (p + 2 > body.length) return bad("truncated ClientHello");
  const extEnd = p + 2 + u16(body, p);
  if (extEnd > body.length) return bad("truncated extensions");
  p += 2;
  while (p + 4 <= extEnd) {
    const type = u16(body, p);
    const len = u16(body, p + 2);
    const data = body.subarray(p + 4, p + 4 + len);
    if (p + 4 + len > extEnd) return bad("truncated extension");
    if (type === EXT_SERVER_NAME) {
      const name = serverName(data);
      if (name === null) return bad("malformed server_name");
      if (name !== undefined) hello.serverName = name;
    } else if (type === EXT_ALPN) {
      const protocols = alpnList(data);
      if (protocols === null) return bad("malformed ALPN list");
      hello.alpn = protocols;
    }
    p += 4 + len;
  }
  return { status: "done", hello };
}

/** The host_name entry of a server_name extension; null when malformed. */
function serverName(data: Uint8Array): string | undefined | null {
  if (data.length < 2 || u16(data, 0) !== data.length - 2) return null;
  let p = 2;
  while (p + 3 <= data.length) {
    const type = data[p] as number;
    const len = u16(data, p + 1);
    if (p + 3 + len > data.length) return null;
    if (type === 0) {
      const name = decoder.decode(data.subarray(p + 3, p + 3 + len));
      if (!/^[\x21-\x7e]{1,253}$/.test(name)) return null;
      return name.toLowerCase();
    }
    p += 3 + len;
  }
  return undefined;
}

function alpnList(data: Uint8Array): string[] | null {
  if (data.length < 2 || u16(data, 0) !== data.length - 2) return null;
  const out: string[] = [];
  let p = 2;
  while (p < data.length) {
    const len = data[p] as number;
    if (len === 0 || p + 1 + len > data.length) return null;
    out.push(decoder.decode(data.subarray(p + 1, p + 1 + len)));
    p += 1 + len;
  }
  return out;
}

function u16(b: Uint8Array, at: number): number {
  return ((b[at] as number) << 8) | (b[at + 1] as number);
}

function concat(parts: Uint8Array[], limit: number): Uint8Array {
  const out = new Uint8Array(limit);
  let n = 0;
  for (const part of parts) {
    const take = Math.min(part.length, limit - n);
    out.set(part.subarray(0, take), n);
    n += take;
    if (n === limit) break;
  }
  return out;
}

/** A source of bytes, as a Deno connection or a tunnel stream is. */
export interface Reader {
  read(p: Uint8Array): Promise<number | null>;
}

/** What {@linkcode peekClientHello} found, with every byte it read. */
export type PeekResult =
  | { ok: true; hello: ClientHello; bytes: Uint8Array }
  | { ok: false; reason: string; bytes: Uint8Array };

/**
 * Reads from `conn` until the ClientHello is complete, then returns it and
 * the bytes read (to be written first to whoever takes the connection).
 * Fails on anything but TLS, a hello over {@linkcode MAX_HELLO_BYTES}, the
 * end of the stream, or `timeoutMs` passing (the caller should then close
 * `conn`, which also ends the pending read).
 */
export async function peekClientHello(conn: Reader, timeoutMs: number): Promise<PeekResult> {
  let buf = new Uint8Array(4096);
  let n = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    while (true) {
      if (n === buf.length) {
        if (buf.length >= MAX_HELLO_BYTES + 5 * 8) {
          return { ok: false, reason: "ClientHello too large", bytes: buf };
        }
        const bigger = new Uint8Array(buf.length * 2);
        bigger.set(buf);
        buf = bigger;
      }
      const got = await Promise.race([conn.read(buf.subarray(n)), timeout]);
      if (got === "timeout") {
        return { ok: false, reason: "no ClientHello in time", bytes: buf.subarray(0, n) };
      }
      if (got === null) {
        return { ok: false, reason: "closed before the ClientHello", bytes: buf.subarray(0, n) };
      }
      n += got;
      const parsed = parseClientHello(buf.subarray(0, n));
      if (parsed.status === "done") {
        return { ok: true, hello: parsed.hello, bytes: buf.subarray(0, n) };
      }
      if (parsed.status === "invalid") {
        return { ok: false, reason: parsed.reason, bytes: buf.subarray(0, n) };
      }
    }
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return { ok: false, reason, bytes: buf.subarray(0, n) };
  } finally {
    clearTimeout(timer);
  }
}
