/**
 * Proxy URLs (lib/transport/proxy_url.ts): the forms users write, the
 * mistakes they make (each a sentence naming what to change), and the
 * password never shown, whatever it is.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { maskUserinfo, parseProxyUrl } from "../../lib/transport/proxy_url.ts";
import { fuzz } from "../helpers/fuzz.ts";

function parsed(text: string) {
  const p = parseProxyUrl(text);
  if (typeof p === "string") throw new Error(`expected a proxy from "${text}", got: ${p}`);
  return p;
}

Deno.test("http and socks5 URLs, with and without credentials, IPv6 hosts", () => {
  const plain = parsed("http://proxy.example:3128");
  assert.deepEqual(plain, {
    kind: "http",
    address: { hostname: "proxy.example", port: 3128 },
    display: "http://proxy.example:3128",
  });
  const auth = parsed(" HTTP://alice:s3cret@10.0.0.1:8080/ ");
  assert.equal(auth.kind, "http");
  assert.equal(auth.credentials?.user, "alice");
  assert.equal(auth.credentials?.pass.reveal(), "s3cret");
  assert.equal(auth.display, "http://alice:***@10.0.0.1:8080");
  const v6 = parsed("socks5://bob:pw@[::1]:1080");
  assert.deepEqual(v6.address, { hostname: "::1", port: 1080 });
  assert.equal(v6.display, "socks5://bob:***@[::1]:1080");
  // Percent-encoding lets a password hold @, : and /; the first colon splits user from password.
  const odd = parsed("http://us%40er:p%40ss:w%2Frd@h:1");
  assert.equal(odd.credentials?.user, "us@er");
  assert.equal(odd.credentials?.pass.reveal(), "p@ss:w/rd");
  assert.equal(odd.display, "http://us%40er:***@h:1");
  // An HTTP proxy may take a user with no password.
  assert.equal(parsed("http://token@h:1").credentials?.pass.reveal(), "");
});

Deno.test("each mistake is a sentence saying what to write, with the password masked", () => {
  const cases: Array<[string, RegExp]> = [
    ["proxy:3128", /expected http:\/\/\[USER:PASS@\]HOST:PORT or socks5:\/\/.*got "proxy:3128"/],
    [
      "https://h:443",
      /scheme "https" is not supported .* use http:\/\/ \(HTTP CONNECT\) or socks5:\/\//,
    ],
    ["socks4://h:1080", /scheme "socks4"/],
    ["http://h", /"http:\/\/h" has no port: add :PORT/],
    ["http://h:", /has no port/],
    ["http://h:0", /port "0" .* must be 1-65535/],
    ["http://h:65536", /port "65536"/],
    ["http://h:80x", /port "80x"/],
    ["http://:80", /no host/],
    ["http://h:80/path", /expected http/],
    ["http://h:80?q", /expected http/],
    ["http://[1.2.3.4]:80", /not an IPv6 address/],
    ["http://a:s3cret%zz@h:1", /"http:\/\/\*\*\*@h:1" are not valid percent-encoding/],
    ["http://:s3cret@h:1", /have no user name/],
    ["socks5://bob@h:1", /SOCKS5 proxy needs USER:PASS with a password/],
    [`socks5://bob:${"x".repeat(256)}@h:1`, /at most 255 bytes/],
  ];
  for (const [text, re] of cases) {
    const p = parseProxyUrl(text);
    assert.equal(typeof p, "string", text);
    assert.match(p as string, re, text);
    assert.ok(!(p as string).includes("s3cret"), p as string);
  }
});

Deno.test("maskUserinfo hides everything up to the last @", () => {
  assert.equal(maskUserinfo("http://a:b@h:1"), "http://***@h:1");
  assert.equal(maskUserinfo("http://a:b/c@d@h:1"), "http://***@h:1");
  assert.equal(maskUserinfo("a:b@h:1"), "***@h:1");
  assert.equal(maskUserinfo("http://h:1"), "http://h:1");
});

Deno.test("property: no piece of a password, however odd, is ever shown", () => {
  // Password characters that no message or host here contains, and the URL's separators.
  const password = fc.string({
    minLength: 2,
    maxLength: 30,
    unit: fc.constantFrom(..."XYZ789@/:?#% "),
  }).filter((p) => /[XYZ789]{2}/.test(p));
  fc.assert(
    fc.property(
      fc.constantFrom("http://", "socks5://", "https://", "ftp://", ""),
      fc.constantFrom("alice", "b%40b"),
      password,
      fc.constantFrom("h:1", "[::1]:1080", "h", "h:0", "h:1/x"),
      fc.boolean(),
      (scheme, user, pass, rest, encode) => {
        const secret = encode ? encodeURIComponent(pass) : pass;
        const p = parseProxyUrl(`${scheme}${user}:${secret}@${rest}`);
        const shown = typeof p === "string" ? p : `${p.display} ${JSON.stringify(p)}`;
        for (const piece of secret.match(/[XYZ789]{2,}/g) ?? []) {
          assert.ok(!shown.includes(piece), `${JSON.stringify(shown)} shows ${piece}`);
        }
        if (typeof p !== "string" && encode) assert.equal(p.credentials?.pass.reveal(), pass);
      },
    ),
    fuzz(1000),
  );
});
