/**
 * The PROXY protocol (HAProxy's specification, versions 1 and 2): a header
 * the client writes to a local service before any byte of the user, naming
 * the user's real address and the public address they connected to, so the
 * service's logs, limits and bans see the user instead of the tunnel.
 *
 * - v1 is one text line: `PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\n`.
 * - v2 is binary: a 12-byte signature, version and command (`PROXY`), family
 *   and transport (`AF_INET`/`AF_INET6`, `STREAM`), a length, the addresses.
 *
 * An IPv4-mapped IPv6 address (`::ffff:203.0.113.7`, what a dual-stack
 * listener reports for an IPv4 user) is written as the IPv4 address it is.
 * When only one side is IPv4 both are written as IPv6 (the IPv4 one mapped),
 * since a header carries one family. A host that is no IP address at all
 * gives `PROXY UNKNOWN` (v1) or `AF_UNSPEC` (v2): the service then uses the
 * connection's own addresses, as the specification says.
 *
 * The parser is what the tests check the encoder against, and it is strict
 * and incremental: it says whether the bytes so far are a complete header,
 * could still become one, or never will.
 *
 * @module
 */

import type { HostPort } from "../util/addr.ts";
import { parseIp } from "../util/cidr.ts";

/** Which version of the PROXY protocol an app's service expects. */
export type ProxyProtocolVersion = "v1" | "v2";

/** The two ends of a user's connection, as a PROXY protocol header names them. */
export interface ProxiedAddresses {
  /** The user: their real address and port. */
  source: HostPort;
  /** The public address and port the user connected to. */
  destination: HostPort;
}

/** The 12 bytes every v2 header starts with. */
export const V2_SIGNATURE: Uint8Array = new Uint8Array([
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
]);

/** Longest v1 line the specification allows, CRLF included. */
export const V1_MAX_BYTES = 107;

const V1_PREFIX = new TextEncoder().encode("PROXY ");
const V2_FIXED_BYTES = 16;
const V2_VERSION = 0x20;
const V2_LOCAL = 0x00;
const V2_PROXY = 0x01;
const AF_UNSPEC = 0x00;
const AF_INET = 0x10;
const AF_INET6 = 0x20;
const AF_UNIX = 0x30;
const STREAM = 0x01;
const DGRAM = 0x02;

/**
 * The header to send first to a service, for a user connection between
 * `addresses.source` and `addresses.destination`.
 *
 * @example
 * ```ts
 * import { encodeProxyHeader } from "./proxy_protocol.ts";
 * const line = encodeProxyHeader("v1", {
 *   source: { hostname: "203.0.113.7", port: 51234 },
 *   destination: { hostname: "198.51.100.1", port: 443 },
 * });
 * console.log(new TextDecoder().decode(line)); // PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\n
 * ```
 */
export function encodeProxyHeader(
  version: ProxyProtocolVersion,
  addresses: ProxiedAddresses,
): Uint8Array {
  checkPort(addresses.source.port);
  checkPort(addresses.destination.port);
  const pair = ipPair(addresses);
  return version === "v1" ? encodeV1(pair, addresses) : encodeV2(pair, addresses);
}

/** Both addresses as bytes of one family, or undefined when either is not an IP address. */
function ipPair(a: ProxiedAddresses): { src: Uint8Array; dst: Uint8Array } | undefined {
  const src = parseIp(a.source.hostname);
  const dst = parseIp(a.destination.hostname);
  if (src === undefined || dst === undefined) return undefined;
  if (src.length === dst.length) return { src, dst };
  return { src: asIpv6(src), dst: asIpv6(dst) };
}

/** An IPv4 address as its IPv4-mapped IPv6 form; an IPv6 one as it is. */
function asIpv6(bytes: Uint8Array): Uint8Array {
  if (bytes.length === 16) return bytes;
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(bytes, 12);
  return out;
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`a PROXY protocol port must be 0-65535, got ${port}`);
  }
}

function encodeV1(
  pair: { src: Uint8Array; dst: Uint8Array } | undefined,
  a: ProxiedAddresses,
): Uint8Array {
  if (pair === undefined) return new TextEncoder().encode("PROXY UNKNOWN\r\n");
  const v4 = pair.src.length === 4;
  // A TCP6 line must hold IPv6 text, so a mapped address keeps its ::ffff: prefix here.
  const show = (ip: Uint8Array) => v4 || !isMapped(ip) ? formatIp(ip) : `::ffff:${formatIp(ip)}`;
  const line = `PROXY ${v4 ? "TCP4" : "TCP6"} ${show(pair.src)} ${show(pair.dst)} ` +
    `${a.source.port} ${a.destination.port}\r\n`;
  return new TextEncoder().encode(line);
}

function encodeV2(
  pair: { src: Uint8Array; dst: Uint8Array } | undefined,
  a: ProxiedAddresses,
): Uint8Array {
  const size = pair === undefined ? 0 : pair.src.length * 2 + 4;
  const out = new Uint8Array(V2_FIXED_BYTES + size);
  out.set(V2_SIGNATURE);
  out[12] = V2_VERSION | V2_PROXY;
  const view = new DataView(out.buffer);
  view.setUint16(14, size);
  if (pair === undefined) {
    out[13] = AF_UNSPEC;
    return out;
  }
  out[13] = (pair.src.length === 4 ? AF_INET : AF_INET6) | STREAM;
  const n = pair.src.length;
  out.set(pair.src, 16);
  out.set(pair.dst, 16 + n);
  view.setUint16(16 + 2 * n, a.source.port);
  view.setUint16(18 + 2 * n, a.destination.port);
  return out;
}

/** A header the parser read. */
export interface ProxyHeader {
  version: ProxyProtocolVersion;
  /**
   * `proxy` for a relayed connection; `local` (v2 only) for one the proxy
   * made itself, such as a health check, whose addresses mean nothing.
   */
  command: "proxy" | "local";
  /**
   * What the addresses are: `tcp4`/`tcp6` (v2 also `udp4`/`udp6` and
   * `unix`), or `unknown` (v1 `UNKNOWN`, v2 `AF_UNSPEC`).
   */
  family: "tcp4" | "tcp6" | "udp4" | "udp6" | "unix" | "unknown";
  /** The two ends, for an IP family with the `proxy` command; undefined otherwise. */
  addresses: ProxiedAddresses | undefined;
  /** Bytes the header took, CRLF or TLVs included; the stream's own bytes start here. */
  length: number;
}

/** What the bytes so far are: a header, the start of one, or never one. */
export type ProxyHeaderParse =
  | { kind: "header"; header: ProxyHeader }
  | { kind: "incomplete" }
  | { kind: "invalid"; reason: string };

/**
 * Reads a PROXY protocol header (either version) at the start of `bytes`.
 * `incomplete` means more bytes may still make a valid header; `invalid`
 * means no more bytes can, and says why.
 *
 * @example
 * ```ts
 * import { encodeProxyHeader, parseProxyHeader } from "./proxy_protocol.ts";
 * const bytes = encodeProxyHeader("v2", {
 *   source: { hostname: "2001:db8::7", port: 51234 },
 *   destination: { hostname: "2001:db8::1", port: 443 },
 * });
 * const parsed = parseProxyHeader(bytes);
 * if (parsed.kind === "header") console.log(parsed.header.addresses?.source); // 2001:db8::7 51234
 * ```
 */
export function parseProxyHeader(bytes: Uint8Array): ProxyHeaderParse {
  if (startsLike(bytes, V2_SIGNATURE)) return parseV2(bytes);
  if (startsLike(bytes, V1_PREFIX)) return parseV1(bytes);
  return { kind: "invalid", reason: "neither a v1 (PROXY ...) nor a v2 (signature) header" };
}

/** True when `bytes` and `prefix` agree on every byte both have. */
function startsLike(bytes: Uint8Array, prefix: Uint8Array): boolean {
  const n = Math.min(bytes.length, prefix.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

const V1_LINE = /^PROXY (?:UNKNOWN(?: [^\r\n]*)?|(TCP4|TCP6) (\S+) (\S+) (\d{1,5}) (\d{1,5}))$/;

function parseV1(bytes: Uint8Array): ProxyHeaderParse {
  const limit = Math.min(bytes.length, V1_MAX_BYTES);
  let cr = -1;
  for (let i = 0; i < limit; i++) {
    const b = bytes[i]!;
    if (b === 0x0d) {
      cr = i;
      break;
    }
    if (b < 0x20 || b > 0x7e) return invalid(`v1: byte 0x${b.toString(16)} at offset ${i}`);
  }
  if (cr < 0) {
    return bytes.length < V1_MAX_BYTES
      ? { kind: "incomplete" }
      : invalid(`v1: no CRLF within ${V1_MAX_BYTES} bytes`);
  }
  if (cr + 1 >= bytes.length) return { kind: "incomplete" };
  if (bytes[cr + 1] !== 0x0a) return invalid("v1: CR not followed by LF");
  const line = new TextDecoder().decode(bytes.subarray(0, cr));
  const m = V1_LINE.exec(line);
  if (!m) return invalid(`v1: malformed line "${line}"`);
  const length = cr + 2;
  const [, family, src, dst, sport, dport] = m;
  if (family === undefined) {
    return header({
      version: "v1",
      command: "proxy",
      family: "unknown",
      addresses: undefined,
      length,
    });
  }
  const v6 = family === "TCP6";
  const srcIp = v1Address(src!, v6);
  const dstIp = v1Address(dst!, v6);
  if (srcIp === undefined || dstIp === undefined) {
    return invalid(`v1: "${srcIp === undefined ? src : dst}" is not an ${family} address`);
  }
  const srcPort = v1Port(sport!);
  const dstPort = v1Port(dport!);
  if (srcPort === undefined || dstPort === undefined) {
    return invalid(`v1: "${srcPort === undefined ? sport : dport}" is not a port`);
  }
  return header({
    version: "v1",
    command: "proxy",
    family: v6 ? "tcp6" : "tcp4",
    addresses: {
      source: { hostname: srcIp, port: srcPort },
      destination: { hostname: dstIp, port: dstPort },
    },
    length,
  });
}

/** An address of the line's family, normalised (a mapped IPv4 shown as IPv4). */
function v1Address(text: string, v6: boolean): string | undefined {
  if (v6 !== text.includes(":") || !/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  const bytes = parseIp(text);
  return bytes === undefined ? undefined : formatIp(bytes);
}

function v1Port(text: string): number | undefined {
  if (text.length > 1 && text.startsWith("0")) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

function parseV2(bytes: Uint8Array): ProxyHeaderParse {
  if (bytes.length < V2_FIXED_BYTES) {
    // Whatever is there already must be possible.
    if (bytes.length > 12 && (bytes[12]! & 0xf0) !== V2_VERSION) return badVersion(bytes[12]!);
    return { kind: "incomplete" };
  }
  const verCmd = bytes[12]!;
  if ((verCmd & 0xf0) !== V2_VERSION) return badVersion(verCmd);
  const cmd = verCmd & 0x0f;
  if (cmd !== V2_LOCAL && cmd !== V2_PROXY) return invalid(`v2: unknown command ${cmd}`);
  const famByte = bytes[13]!;
  const size = (bytes[14]! << 8) | bytes[15]!;
  const af = famByte & 0xf0;
  const transport = famByte & 0x0f;
  const family = v2Family(af, transport);
  if (family === undefined) return invalid(`v2: unknown family/transport 0x${hex2(famByte)}`);
  const need = af === AF_INET ? 12 : af === AF_INET6 ? 36 : af === AF_UNIX ? 216 : 0;
  if (size < need) return invalid(`v2: length ${size} is too short for its family (${need})`);
  const length = V2_FIXED_BYTES + size;
  if (bytes.length < length) return { kind: "incomplete" };
  const command = cmd === V2_PROXY ? "proxy" : "local";
  let addresses: ProxiedAddresses | undefined;
  if (command === "proxy" && (af === AF_INET || af === AF_INET6)) {
    const n = af === AF_INET ? 4 : 16;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    addresses = {
      source: { hostname: formatIp(bytes.subarray(16, 16 + n)), port: view.getUint16(16 + 2 * n) },
      destination: {
        hostname: formatIp(bytes.subarray(16 + n, 16 + 2 * n)),
        port: view.getUint16(18 + 2 * n),
      },
    };
  }
  return header({ version: "v2", command, family, addresses, length });
}

function v2Family(af: number, transport: number): ProxyHeader["family"] | undefined {
  if (af === AF_UNSPEC && transport === 0) return "unknown";
  if (transport !== STREAM && transport !== DGRAM) return undefined;
  const udp = transport === DGRAM;
  if (af === AF_INET) return udp ? "udp4" : "tcp4";
  if (af === AF_INET6) return udp ? "udp6" : "tcp6";
  if (af === AF_UNIX) return "unix";
  return undefined;
}

function badVersion(verCmd: number): ProxyHeaderParse {
  return invalid(`v2: version ${verCmd >> 4} (expected 2)`);
}

function header(h: ProxyHeader): ProxyHeaderParse {
  return { kind: "header", header: h };
}

function invalid(reason: string): ProxyHeaderParse {
  return { kind: "invalid", reason };
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, "0");
}

/**
 * An address as text: dotted IPv4 for 4 bytes; for 16, IPv6 in its
 * canonical form (RFC 5952: lowercase, the longest run of zero groups as
 * `::`), or dotted IPv4 for an IPv4-mapped address.
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  if (bytes.length !== 16) {
    throw new RangeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  }
  if (isMapped(bytes)) return bytes.subarray(12).join(".");
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let best = -1;
  let bestLen = 1; // a single zero group is not shortened
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** True for an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`). */
function isMapped(bytes: Uint8Array): boolean {
  return bytes.length === 16 && bytes.subarray(0, 10).every((b) => b === 0) &&
    bytes[10] === 0xff && bytes[11] === 0xff;
}
