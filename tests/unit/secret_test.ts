/**
 * Secrets and proofs (`lib/util/secret.ts`): masked printing, HMAC proofs,
 * fresh nonces and ids, masking of secrets in text.
 *
 * @module
 */

import assert from "node:assert/strict";
import { maskSecrets, newId, newNonce, prove, Secret, verifyProof } from "../../lib/util/secret.ts";

Deno.test("a Secret prints masked however it is printed", () => {
  const s = new Secret("hunter2-value");
  assert.equal(String(s), "***");
  assert.equal(`${s}`, "***");
  assert.equal(JSON.stringify(s), '"***"');
  assert.equal(JSON.stringify({ token: s }), '{"token":"***"}');
  assert.equal(Deno.inspect(s), "Secret(***)");
  assert.equal(Deno.inspect({ token: s }), "{ token: Secret(***) }");
  assert.ok(!Deno.inspect([s], { depth: 10, showHidden: true }).includes("hunter2"));
  assert.equal(s.reveal(), "hunter2-value");
});

Deno.test("prove is HMAC-SHA256 of the NUL-joined parts", async () => {
  // RFC 4231-style known answer: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
  assert.equal(
    await prove(new Secret("key"), "The quick brown fox jumps over the lazy dog"),
    "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
  );
  const s = new Secret("s3cret");
  assert.equal(await prove(s, "a", "b"), await prove(s, "a\0b"));
  assert.notEqual(await prove(s, "ab", "c"), await prove(s, "a", "bc"));
  assert.match(await prove(s, "x"), /^[0-9a-f]{64}$/);
});

Deno.test("verifyProof accepts a good proof and rejects tampered ones", async () => {
  const s = new Secret("s3cret");
  const nonce = newNonce();
  const proof = await prove(s, nonce, "control", "lab");
  assert.equal(await verifyProof(s, proof, nonce, "control", "lab"), true);
  // One hex digit changed.
  const last = proof.at(-1) === "0" ? "1" : "0";
  assert.equal(await verifyProof(s, proof.slice(0, -1) + last, nonce, "control", "lab"), false);
  const first = proof[0] === "f" ? "e" : "f";
  assert.equal(await verifyProof(s, first + proof.slice(1), nonce, "control", "lab"), false);
  // Other parts, another secret, malformed proofs.
  assert.equal(await verifyProof(s, proof, nonce, "work", "lab"), false);
  assert.equal(await verifyProof(s, proof, nonce, "control", "lab2"), false);
  assert.equal(await verifyProof(s, proof, newNonce(), "control", "lab"), false);
  assert.equal(await verifyProof(new Secret("s3cret!"), proof, nonce, "control", "lab"), false);
  assert.equal(await verifyProof(s, proof.toUpperCase(), nonce, "control", "lab"), false);
  assert.equal(await verifyProof(s, proof.slice(0, 62), nonce, "control", "lab"), false);
  assert.equal(await verifyProof(s, proof + "00", nonce, "control", "lab"), false);
  assert.equal(await verifyProof(s, "", nonce, "control", "lab"), false);
  assert.equal(await verifyProof(s, "zz" + proof.slice(2), nonce, "control", "lab"), false);
});

Deno.test("newNonce and newId are fresh lowercase hex", () => {
  const nonces = new Set(Array.from({ length: 20 }, () => newNonce()));
  const ids = new Set(Array.from({ length: 20 }, () => newId()));
  assert.equal(nonces.size, 20);
  assert.equal(ids.size, 20);
  for (const n of nonces) assert.match(n, /^[0-9a-f]{64}$/);
  for (const id of ids) assert.match(id, /^[0-9a-f]{32}$/);
});

Deno.test("maskSecrets masks long values anywhere, short ones only as whole words", () => {
  const masks: Array<[string, string]> = [["s3cret-tok", "(the token)"], ["t", "(t)"]];
  assert.equal(
    maskSecrets('got "hosts3cret-toks3cret-tok:80" for t', masks),
    'got "host(the token)(the token):80" for (t)',
  );
  // Longest first: a value that contains another is masked whole; `$&` is no pattern.
  assert.equal(
    maskSecrets("abcdefgh abcdef", [["abcdef", "$&"], ["abcdefgh", "(long)"]]),
    "(long) $&",
  );
});
