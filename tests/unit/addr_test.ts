/**
 * Addresses and port specs (`lib/util/addr.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { formatHostPort, parseHostPort, parsePortSpec } from "../../lib/util/addr.ts";

Deno.test("parseHostPort accepts host:port and [v6]:port", () => {
  assert.deepEqual(parseHostPort("127.0.0.1:7700"), { hostname: "127.0.0.1", port: 7700 });
  assert.deepEqual(parseHostPort("example.com:0"), { hostname: "example.com", port: 0 });
  assert.deepEqual(parseHostPort("[::1]:8080"), { hostname: "::1", port: 8080 });
  assert.deepEqual(parseHostPort("[fe80::1%eth0]:22"), { hostname: "fe80::1%eth0", port: 22 });
  assert.deepEqual(parseHostPort("  host:65535 "), { hostname: "host", port: 65535 });
  assert.deepEqual(parseHostPort("h:00022"), { hostname: "h", port: 22 });
});

Deno.test("parseHostPort explains what is wrong", () => {
  for (
    const bad of ["127.0.0.1", ":80", "host:", "host:http", "::1:80", "a b:1", "host:123456", ""]
  ) {
    assert.equal(parseHostPort(bad), `expected HOST:PORT, got "${bad}"`);
  }
  assert.equal(parseHostPort("host:65536"), `port 65536 is out of range (0-65535) in "host:65536"`);
  assert.equal(parseHostPort("[::]:99999"), `port 99999 is out of range (0-65535) in "[::]:99999"`);
});

Deno.test("formatHostPort brackets IPv6 and round-trips", () => {
  for (const text of ["127.0.0.1:7700", "[::1]:8080", "example.com:1"]) {
    const parsed = parseHostPort(text);
    assert.ok(typeof parsed !== "string");
    assert.equal(formatHostPort(parsed), text);
  }
});

Deno.test("parsePortSpec reads ports and ranges", () => {
  assert.deepEqual(parsePortSpec("6000-6100,7022"), [
    { from: 6000, to: 6100 },
    { from: 7022, to: 7022 },
  ]);
  assert.deepEqual(parsePortSpec(" 1 , 2-3,65535 "), [
    { from: 1, to: 1 },
    { from: 2, to: 3 },
    { from: 65535, to: 65535 },
  ]);
  assert.deepEqual(parsePortSpec("80-80"), [{ from: 80, to: 80 }]);
});

Deno.test("parsePortSpec explains what is wrong", () => {
  for (const bad of ["", "1,,2", "1-", "-5", "a-b", "1-2-3", "6000 6001", "123456"]) {
    assert.equal(parsePortSpec(bad), `expected ports like "6000-6100,7022", got "${bad}"`);
  }
  assert.equal(parsePortSpec("0"), `port "0" is outside 1-65535`);
  assert.equal(parsePortSpec("10,0-5"), `port "0-5" is outside 1-65535`);
  assert.equal(parsePortSpec("60000-65536"), `port "60000-65536" is outside 1-65535`);
  assert.equal(parsePortSpec("9-8"), `range "9-8" runs backwards`);
});
