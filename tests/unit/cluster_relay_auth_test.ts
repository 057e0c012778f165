/**
 * The proof two nodes give each other on a relay link: a hello only a
 * holder of the secret can make, meant for one node, fresh; an answer over
 * the dialler's nonce; and the relayed user's header.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Secret } from "../../lib/util/secret.ts";
import {
  boundTo,
  parseUserHeader,
  RelayKeys,
  userHeader,
} from "../../lib/server/cluster/relay_auth.ts";

const keys = new RelayKeys(new Secret("the-cluster-secret-123"));
const other = new RelayKeys(new Secret("another-secret-456789"));
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("a hello is accepted by the node it names, under the same secret only", async () => {
  const { header, nonce } = await keys.hello("n1", "n2", "none");
  const hello = await keys.checkHello(header, "n2");
  assert.equal(hello?.node, "n1");
  assert.equal(hello?.nonce, nonce);
  assert.equal(await keys.checkHello(header, "n3"), undefined, "meant for another node");
  assert.equal(await other.checkHello(header, "n2"), undefined, "another secret");
  assert.ok(!text(header).includes("the-cluster-secret"), "the secret is not in the hello");
});

Deno.test("a tampered, stale or malformed hello is refused", async () => {
  const { header } = await keys.hello("n1", "n2", "none");
  const parsed = JSON.parse(text(header));
  for (
    const bad of [
      { ...parsed, node: "n9" },
      { ...parsed, ts: parsed.ts + 1 },
      { ...parsed, mac: "0".repeat(64) },
      { ...parsed, extra: 1 },
      { ...parsed, ca: "b".repeat(64) }, // bound to another channel than it says
    ]
  ) assert.equal(await keys.checkHello(bytes(JSON.stringify(bad)), "n2"), undefined);
  const stale = await (async () => {
    const realNow = Date.now;
    Date.now = () => realNow() - 10 * 60_000;
    try {
      return (await keys.hello("n1", "n2", "none")).header;
    } finally {
      Date.now = realNow;
    }
  })();
  assert.equal(await keys.checkHello(stale, "n2"), undefined, "ten minutes old");
  for (const junk of ["", "{", "null", "[]", "\u0000\u0001", "x".repeat(5000)]) {
    assert.equal(await keys.checkHello(bytes(junk), "n2"), undefined);
  }
});

Deno.test("a hello is bound to the TLS identity the dialler trusted: a relayed one is refused", async () => {
  const mine = "a".repeat(64);
  const mitm = "c".repeat(64);
  const direct = await keys.checkHello((await keys.hello("n1", "n2", mine)).header, "n2");
  assert.ok(direct && boundTo(direct, mine), "made over this node's own certificate");
  // A man in the middle shows its own certificate: the dialler's hello is bound to that one.
  const relayed = await keys.checkHello((await keys.hello("n1", "n2", mitm)).header, "n2");
  assert.ok(relayed, "the proof itself is valid");
  assert.equal(boundTo(relayed, mine), false, "but not over this node's channel");
  const viaRoots = await keys.checkHello((await keys.hello("n1", "n2", "public")).header, "n2");
  assert.ok(viaRoots && boundTo(viaRoots, mine), "a certificate the system roots vouch for");
  const plain = await keys.checkHello((await keys.hello("n1", "n2", "none")).header, "n2");
  assert.ok(
    plain && boundTo(plain, undefined) && !boundTo(plain, mine),
    "plaintext only to plaintext",
  );
  assert.equal(boundTo(direct, undefined), false);
});

Deno.test("the answer proves the accepting node holds the secret, for this nonce", async () => {
  const { nonce } = await keys.hello("n1", "n2", "none");
  const answer = await keys.answer("n2", nonce);
  assert.ok(await keys.checkAnswer(answer.subarray(0, answer.length - 1), "n2", nonce));
  assert.ok(!(await keys.checkAnswer(answer.subarray(0, answer.length - 1), "n3", nonce)));
  assert.ok(!(await keys.checkAnswer(answer.subarray(0, answer.length - 1), "n2", "f".repeat(64))));
  const forged = await other.answer("n2", nonce);
  assert.ok(!(await keys.checkAnswer(forged.subarray(0, forged.length - 1), "n2", nonce)));
});

Deno.test("a relayed user's header carries the port and both addresses", () => {
  const user = {
    port: 20001,
    from: { hostname: "203.0.113.7", port: 50123 },
    to: { hostname: "10.0.0.2", port: 20001 },
  };
  assert.deepEqual(parseUserHeader(userHeader(user)), user);
  assert.equal(parseUserHeader(bytes(JSON.stringify({ ...user, port: 0 }))), undefined);
  assert.equal(parseUserHeader(bytes("{}")), undefined);
  assert.equal(parseUserHeader(bytes("garbage")), undefined);
  // A web request relayed for a host name: port 0 is fine with a host.
  const web = { ...user, port: 0, host: "site.example.net" };
  assert.deepEqual(parseUserHeader(userHeader(web)), web);
  assert.equal(parseUserHeader(bytes(JSON.stringify({ ...web, host: "" }))), undefined);
});
