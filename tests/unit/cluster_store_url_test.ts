/** Store URLs: what is accepted, what is printed, and that passwords are never quoted back. */

import assert from "node:assert/strict";
import { maskStore, parseStoreUrl } from "../../lib/cluster/store_url.ts";
import { ConfigError } from "../../lib/util/errors.ts";

Deno.test("a store URL gives an address without credentials, TLS and the database", () => {
  const s = parseStoreUrl("rediss://burrow:p%40ss-word-1@redis.internal:6380/3");
  assert.equal(s.address, "redis.internal:6380");
  assert.equal(s.tls, true);
  assert.equal(s.db, 3);
  const plain = parseStoreUrl("redis://127.0.0.1");
  assert.deepEqual([plain.address, plain.tls, plain.db, plain.secrets.length], [
    "127.0.0.1:6379",
    false,
    0,
    1, // the URL itself
  ]);
});

Deno.test("masking covers the password raw and encoded, the user info and the URL", () => {
  const url = "redis://burrow:p%40ss-word-1@redis.internal:6380";
  const s = parseStoreUrl(url);
  const text =
    `connect ${url} failed; AUTH burrow p@ss-word-1; p%40ss-word-1; burrow:p%40ss-word-1`;
  const masked = maskStore(s, text);
  assert.ok(!masked.includes("p@ss-word-1"), masked);
  assert.ok(!masked.includes("p%40ss-word-1"), masked);
  assert.match(masked, /^connect \*\*\* failed/);
});

Deno.test("bad store URLs are refused with a message that does not quote the password", () => {
  const cases: Array<[string, RegExp]> = [
    ["http://127.0.0.1:6379", /redis:\/\/ or rediss:\/\//],
    ["redis://127.0.0.1:6379/x", /database number/],
    ["redis://127.0.0.1:6379/0?tls=1", /no query/],
    ["not a url with s3cret-pw@", /expected redis:/],
    ["redis://u:s3cret-pw@[::1", /expected redis:/],
  ];
  for (const [url, re] of cases) {
    assert.throws(() => parseStoreUrl(url), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, re);
      assert.ok(!err.message.includes("s3cret-pw"), err.message);
      return true;
    });
  }
});
