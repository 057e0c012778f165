/**
 * UDP apps end to end (CONTRACT "UDP apps"): real server and client
 * processes, real UDP sockets on both sides, `dig` against a DNS responder
 * through the tunnel.
 */

import assert from "node:assert/strict";
import { groupFile, readyPort, startClient, startServer, startTunnel } from "../helpers/harness.ts";
import { DNS_ANSWER, dnsResponder, udpEcho, UdpUser } from "../helpers/udp.ts";
import { missing } from "../helpers/third_party.ts";

const TOKEN = "udp-test-token";

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

async function sha256(data: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("udp: datagrams of every size come back byte-exact from the public port", async () => {
  using echo = await udpEcho();
  await using t = await startTunnel({
    group: "udp-echo",
    token: TOKEN,
    apps: [{ name: "echo", type: "udp", local: echo.addr }],
  });
  const port = await readyPort(t.client, "udp-echo", "echo", 0, 15_000, "udp://");
  using user = await UdpUser.open();
  const first = await user.ask(new Uint8Array([7]), port);
  assert.deepEqual(first.payload, new Uint8Array([7]));
  assert.equal(first.from, `127.0.0.1:${port}`);
  for (const size of [1, 2, 63, 512, 1200, 1472, 4096, 16_384, 32_768, 61_440]) {
    const payload = bytes(size, size);
    await user.send(payload, port);
    const got = await user.receive();
    assert.equal(got.payload.length, size);
    assert.equal(await sha256(got.payload), await sha256(payload), `${size} bytes`);
    assert.equal(got.from, `127.0.0.1:${port}`);
  }
  assert.equal(echo.sources.size, 1, "one user, one socket at the local service");
});
