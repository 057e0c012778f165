/**
 * PROXY protocol headers (lib/tunnel/proxy_protocol.ts): exact bytes from
 * the specification, our strict parser (with properties over random
 * addresses and random bytes), and two real consumers, nginx
 * (`listen ... proxy_protocol`) and HAProxy (`accept-proxy`), which must see
 * the addresses the header names, for v1 and v2, IPv4 and IPv6.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { parseIp } from "../../lib/util/cidr.ts";
import {
  encodeProxyHeader,
  formatIp,
  parseProxyHeader,
  type ProxiedAddresses,
  type ProxyProtocolVersion,
  V1_MAX_BYTES,
  V2_SIGNATURE,
} from "../../lib/tunnel/proxy_protocol.ts";
import { fuzz } from "../helpers/fuzz.ts";
import {
  missing,
  startProxyProtocolHaproxy,
  startProxyProtocolNginx,
} from "../helpers/third_party.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);
const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, "").match(/../g)!.map((h) => parseInt(h, 16)));

function ends(src: string, sport: number, dst: string, dport: number): ProxiedAddresses {
  return { source: { hostname: src, port: sport }, destination: { hostname: dst, port: dport } };
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("v1: TCP4 and TCP6 lines as the specification writes them", () => {
  assert.equal(
    text(encodeProxyHeader("v1", ends("203.0.113.7", 51234, "198.51.100.1", 443))),
    "PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\n",
  );
  assert.equal(
    text(encodeProxyHeader("v1", ends("2001:DB8:0:0:0:0:0:7", 1, "2001:db8::1", 65535))),
    "PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n",
  );
});

Deno.test("v1: an IPv4-mapped user is written as IPv4; mixed families as IPv6; names as UNKNOWN", () => {
  assert.equal(
    text(encodeProxyHeader("v1", ends("::ffff:203.0.113.9", 4000, "::ffff:127.0.0.1", 80))),
    "PROXY TCP4 203.0.113.9 127.0.0.1 4000 80\r\n",
  );
  assert.equal(
    text(encodeProxyHeader("v1", ends("203.0.113.9", 4000, "2001:db8::1", 80))),
    "PROXY TCP6 ::ffff:203.0.113.9 2001:db8::1 4000 80\r\n",
  );
  assert.equal(
    text(encodeProxyHeader("v1", ends("localhost", 4000, "127.0.0.1", 80))),
    "PROXY UNKNOWN\r\n",
  );
});

Deno.test("v2: exact bytes for AF_INET and AF_INET6 with the PROXY command over STREAM", () => {
  const sig = "0d0a0d0a000d0a515549540a";
  assert.deepEqual(
    encodeProxyHeader("v2", ends("192.0.2.1", 8080, "198.51.100.1", 443)),
    hex(`${sig} 21 11 000c c0000201 c6336401 1f90 01bb`),
  );
  assert.deepEqual(
    encodeProxyHeader("v2", ends("2001:db8::7", 1, "::1", 2)),
    hex(
      `${sig} 21 21 0024 20010db8000000000000000000000007 00000000000000000000000000000001 0001 0002`,
    ),
  );
  assert.deepEqual(
    encodeProxyHeader("v2", ends("a.example", 1, "::1", 2)),
    hex(`${sig} 21 00 0000`),
  );
});

Deno.test("encoding refuses a port outside 0-65535", () => {
  for (const port of [-1, 65536, 1.5, NaN]) {
    assert.throws(
      () => encodeProxyHeader("v1", ends("127.0.0.1", port, "127.0.0.1", 1)),
      RangeError,
    );
  }
});

Deno.test("parser: headers, LOCAL, UNKNOWN, and the stream's own bytes after them", () => {
  const line = "PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\nGET /";
  const v1 = parseProxyHeader(bytes(line));
  assert.deepEqual(v1, {
    kind: "header",
    header: {
      version: "v1",
      command: "proxy",
      family: "tcp4",
      addresses: ends("203.0.113.7", 51234, "198.51.100.1", 443),
      length: line.indexOf("GET"),
    },
  });
  const unknown = parseProxyHeader(bytes("PROXY UNKNOWN ffff::1 ::1 1 2\r\n"));
  assert.equal(unknown.kind === "header" && unknown.header.family, "unknown");
  // A LOCAL v2 header (a health check): its addresses mean nothing.
  const local = concat(V2_SIGNATURE, hex("20 11 000c 7f000001 7f000001 0001 0002 aabb"));
  assert.deepEqual(parseProxyHeader(local), {
    kind: "header",
    header: { version: "v2", command: "local", family: "tcp4", addresses: undefined, length: 28 },
  });
  // TLVs after the addresses belong to the header.
  const tlv = concat(
    V2_SIGNATURE,
    hex("21 11 0010 7f000001 7f000002 0001 0002 04 0001 00"),
    bytes("x"),
  );
  const parsed = parseProxyHeader(tlv);
  assert.equal(parsed.kind === "header" && parsed.header.length, 32);
});

Deno.test("parser: every malformed header is invalid, and says where", () => {
  const bad: Array<[string | Uint8Array, RegExp]> = [
    ["GET / HTTP/1.1\r\n", /neither/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", /byte 0xa/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", /CR not followed by LF/],
    ["PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", /malformed/],
    ["PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", /malformed/],
    ["PROXY TCP4 1.2.3.4 ::1 1 2\r\n", /"::1" is not an TCP4 address/],
    ["PROXY TCP6 1.2.3.4 ::1 1 2\r\n", /"1.2.3.4" is not an TCP6 address/],
    ["PROXY TCP6 [::1] ::1 1 2\r\n", /not an TCP6/],
    ["PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", /not an TCP4/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", /"65536" is not a port/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", /"01" is not a port/],
    [`PROXY UNKNOWN ${"x".repeat(V1_MAX_BYTES)}`, /no CRLF within 107/],
    [concat(V2_SIGNATURE, hex("11 11 000c")), /version 1/],
    [concat(V2_SIGNATURE, hex("31")), /version 3/],
    [concat(V2_SIGNATURE, hex("22 11 000c")), /unknown command 2/],
    [concat(V2_SIGNATURE, hex("21 41 000c")), /unknown family/],
    [concat(V2_SIGNATURE, hex("21 13 000c")), /unknown family/],
    [concat(V2_SIGNATURE, hex("21 11 000b")), /length 11 is too short/],
    [concat(V2_SIGNATURE, hex("21 21 0020")), /length 32 is too short for its family \(36\)/],
  ];
  for (const [input, reason] of bad) {
    const parsed = parseProxyHeader(typeof input === "string" ? bytes(input) : input);
    assert.equal(parsed.kind, "invalid", `${input}`);
    assert.match(parsed.kind === "invalid" ? parsed.reason : "", reason, `${input}`);
  }
});

/** Any IP address as text, IPv4-mapped ones included. */
const anyIp = fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4().map((v4) => `::ffff:${v4}`));
const port = fc.integer({ min: 0, max: 65535 });
const version = fc.constantFrom<ProxyProtocolVersion>("v1", "v2");
const addresses = fc.record({
  source: fc.record({ hostname: anyIp, port }),
  destination: fc.record({ hostname: anyIp, port }),
});
const normal = (ip: string) => formatIp(parseIp(ip)!);

Deno.test("property: parsing what was encoded gives the addresses back, however the bytes arrive", () => {
  fc.assert(
    fc.property(version, addresses, fc.uint8Array({ maxLength: 32 }), (v, a, tail) => {
      const header = encodeProxyHeader(v, a);
      const parsed = parseProxyHeader(concat(header, tail));
      assert.equal(parsed.kind, "header");
      if (parsed.kind !== "header") return;
      assert.equal(parsed.header.length, header.length);
      assert.equal(parsed.header.version, v);
      const mixed = parseIp(a.source.hostname)!.length !== parseIp(a.destination.hostname)!.length;
      const v4 = !mixed && parseIp(a.source.hostname)!.length === 4;
      assert.equal(parsed.header.family, v4 ? "tcp4" : "tcp6");
      assert.deepEqual(parsed.header.addresses, {
        source: { hostname: normal(a.source.hostname), port: a.source.port },
        destination: { hostname: normal(a.destination.hostname), port: a.destination.port },
      });
      if (v === "v1") assert.ok(header.length <= V1_MAX_BYTES);
      // Every strict prefix could still become this header.
      for (let n = 0; n < header.length; n++) {
        assert.equal(parseProxyHeader(header.subarray(0, n)).kind, "incomplete", `prefix ${n}`);
      }
    }),
    fuzz(300),
  );
});

Deno.test("property: IPv6 text is canonical (RFC 5952), as WHATWG URLs print it", () => {
  fc.assert(
    fc.property(fc.ipV6(), (ip) => {
      const b = parseIp(ip)!;
      if (b.length === 4) return; // mapped: shown as IPv4 by design
      assert.equal(formatIp(b), new URL(`http://[${ip}]/`).hostname.slice(1, -1));
    }),
    fuzz(500),
  );
});

/** Bytes that look like the start of a header, then anything. */
const headerish = fc.oneof(
  fc.uint8Array({ maxLength: 128 }),
  fc.uint8Array({ maxLength: 128 }).map((b) => concat(bytes("PROXY "), b)),
  fc.tuple(fc.constantFrom("TCP4", "TCP6", "UNKNOWN"), fc.string({ maxLength: 100 })).map((
    [f, s],
  ) => bytes(`PROXY ${f} ${s}\r\n`)),
  fc.uint8Array({ maxLength: 300 }).map((b) => concat(V2_SIGNATURE, b)),
  fc.tuple(
    fc.oneof(fc.constantFrom(0x20, 0x21), fc.integer({ min: 0, max: 255 })),
    fc.oneof(fc.constantFrom(0x00, 0x11, 0x12, 0x21, 0x22, 0x31), fc.integer({ min: 0, max: 255 })),
    fc.integer({ min: -4, max: 4 }),
    fc.uint8Array({ maxLength: 240, size: "max" }),
  ).map(([vc, fam, skew, rest]) =>
    // A length field near the bytes that follow: short, exact or long.
    concat(V2_SIGNATURE, Uint8Array.of(vc, fam, 0, Math.max(0, rest.length + skew) & 0xff), rest)
  ),
);

Deno.test("property: any bytes parse without throwing, and a header never claims more than it has", () => {
  fc.assert(
    fc.property(headerish, (input) => {
      const parsed = parseProxyHeader(input);
      if (parsed.kind === "incomplete") {
        assert.ok(input.length < V1_MAX_BYTES || input[0] === 0x0d, "incomplete past the bound");
        return;
      }
      if (parsed.kind === "invalid") return assert.ok(parsed.reason.length > 0);
      const { header } = parsed;
      assert.ok(header.length <= input.length);
      if (header.version === "v1") {
        assert.deepEqual([...input.subarray(header.length - 2, header.length)], [0x0d, 0x0a]);
      }
      // A header parsed from a prefix of itself is the same header.
      assert.deepEqual(parseProxyHeader(input.subarray(0, header.length)), parsed);
      if (header.addresses) {
        for (const end of [header.addresses.source, header.addresses.destination]) {
          assert.ok(parseIp(end.hostname) !== undefined, end.hostname);
          assert.ok(end.port >= 0 && end.port <= 65535);
        }
      }
    }),
    fuzz(3000),
  );
});

/** One HTTP/1.0 request to `port` preceded by `header`; the response body's last line. */
async function ask(port: number, header: Uint8Array, hostname = "127.0.0.1"): Promise<string> {
  using conn = await Deno.connect({ hostname, port });
  const request = concat(header, bytes("GET / HTTP/1.0\r\nHost: test\r\n\r\n"));
  for (let off = 0; off < request.length;) off += await conn.write(request.subarray(off));
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(4096);
  try {
    for (let n; (n = await conn.read(buf)) !== null;) chunks.push(buf.slice(0, n));
  } catch (err) {
    if (!(err instanceof Deno.errors.ConnectionReset)) throw err; // a refused header
  }
  const response = text(concat(...chunks));
  if (response === "") return "";
  assert.match(response, /^HTTP\/1\.[01] 200 /, response);
  return response.trimEnd().split("\n").at(-1)!.trim();
}

/** What a consumer must report for each header: `SRC SRC_PORT DST DST_PORT`. */
const CASES: Array<{ name: string; addresses: ProxiedAddresses; shown: string }> = [
  {
    name: "IPv4",
    addresses: ends("203.0.113.7", 51234, "198.51.100.1", 8443),
    shown: "203.0.113.7 51234 198.51.100.1 8443",
  },
  {
    name: "IPv6",
    addresses: ends("2001:db8::7", 40000, "2001:db8::1", 443),
    shown: "2001:db8::7 40000 2001:db8::1 443",
  },
  {
    name: "IPv4-mapped IPv6",
    addresses: ends("::ffff:203.0.113.9", 1025, "::ffff:198.51.100.1", 80),
    shown: "203.0.113.9 1025 198.51.100.1 80",
  },
];

const nginxMissing = missing("nginx");
Deno.test({
  name: `nginx reads our v1 and v2 headers over IPv4 and IPv6 and logs the user${
    nginxMissing ? ` (skipped: ${nginxMissing})` : ""
  }`,
  ignore: nginxMissing !== undefined,
  async fn() {
    await using nginx = await startProxyProtocolNginx();
    const expected: string[] = [];
    for (const v of ["v1", "v2"] as const) {
      for (const c of CASES) {
        for (const via of ["127.0.0.1", "::1"]) {
          const shown = await ask(nginx.port, encodeProxyHeader(v, c.addresses), via);
          assert.equal(shown, c.shown, `${v} ${c.name} via ${via}`);
          const [src, sport, dst, dport] = c.shown.split(" ");
          expected.push(`${src}:${sport} > ${dst}:${dport}`);
        }
      }
    }
    // Without a header nginx refuses the connection: the check above could fail.
    assert.equal(await ask(nginx.port, new Uint8Array()), "");
    // The access log has every request's user, in order (written before nginx closed each).
    assert.deepEqual(await nginx.accessLog(), expected);
  },
});

const haproxyMissing = missing("haproxy");
Deno.test({
  name: `HAProxy (accept-proxy) reads our v1 and v2 headers${
    haproxyMissing ? ` (skipped: ${haproxyMissing})` : ""
  }`,
  ignore: haproxyMissing !== undefined,
  async fn() {
    await using haproxy = await startProxyProtocolHaproxy();
    for (const v of ["v1", "v2"] as const) {
      for (const c of CASES) {
        assert.equal(
          await ask(haproxy.port, encodeProxyHeader(v, c.addresses)),
          c.shown,
          `${v} ${c.name}`,
        );
      }
    }
    assert.equal(await ask(haproxy.port, bytes("PROXY TCP4 1.2.3.4 ::1 1 2\r\n")), "");
  },
});
