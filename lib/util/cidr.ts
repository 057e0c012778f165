/**
 * Address ranges in CIDR notation (`203.0.113.0/24`, `2001:db8::/32`, or a
 * single address), for `allow_from`. Addresses are compared as bytes; an
 * IPv4-mapped IPv6 address (`::ffff:203.0.113.7`) counts as its IPv4 one.
 *
 * @module
 */

/** A parsed range: the network's bytes and how many leading bits must match. */
export interface Cidr {
  bytes: Uint8Array;
  bits: number;
}

/** Parses `ADDR` or `ADDR/BITS`; a sentence saying what is wrong otherwise. */
export function parseCidr(text: string): Cidr | string {
  const [addr = "", prefix, extra] = text.trim().split("/");
  if (extra !== undefined) return `expected ADDRESS/BITS, got "${text}"`;
  const bytes = parseIp(addr);
  if (bytes === undefined) return `"${addr}" is not an IPv4 or IPv6 address`;
  const max = bytes.length * 8;
  if (prefix === undefined) return { bytes, bits: max };
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max) {
    return `prefix length "${prefix}" must be 0-${max}`;
  }
  return { bytes, bits: Number(prefix) };
}

/** Parses every range of a list; otherwise what is wrong with the first bad one. */
export function parseCidrList(texts: readonly string[]): Cidr[] | string {
  const out: Cidr[] = [];
  for (const text of texts) {
    const range = parseCidr(text);
    if (typeof range === "string") return range;
    out.push(range);
  }
  return out;
}

/** True when `addr` (an IP address as text) lies in any of `ranges`. */
export function inRanges(addr: string, ranges: readonly Cidr[]): boolean {
  const bytes = parseIp(addr);
  if (bytes === undefined) return false;
  return ranges.some((r) => inRange(bytes, r));
}

function inRange(bytes: Uint8Array, range: Cidr): boolean {
  if (bytes.length !== range.bytes.length) return false;
  const whole = range.bits >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== range.bytes[i]) return false;
  const rest = range.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((bytes[whole]! ^ range.bytes[whole]!) & mask) === 0;
}

/** 4 bytes for IPv4 (and IPv4-mapped IPv6), 16 for IPv6, undefined for anything else. */
export function parseIp(text: string): Uint8Array | undefined {
  const addr = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  if (!addr.includes(":")) return parseIpv4(addr);
  const v6 = parseIpv6(addr.replace(/%.*$/, "")); // a zone (fe80::1%eth0) is not part of the address
  if (v6 === undefined) return undefined;
  const mapped = v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff;
  return mapped ? v6.slice(12) : v6;
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

function parseIpv6(text: string): Uint8Array | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string): number[] | undefined => {
    if (s === "") return [];
    const out: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIpv4(p);
        if (v4 === undefined) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) {
        out.push(parseInt(p, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (head === undefined || tail === undefined) return undefined;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return undefined;
  const all = [...head, ...new Array(halves.length === 2 ? fill : 0).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}
