/**
 * Automatic certificates against a real ACME server (Pebble): issuance
 * over HTTP-01 on the edge's plain listener, the certificate served on the
 * TLS listener and verified up to Pebble's root, files kept 0600, renewal
 * before expiry, reuse after a restart, no order for a name only a stranger
 * asked for, and one order at a time with backoff after a failure.
 */

import assert from "node:assert/strict";
import { makeTempDir } from "../helpers/temp.ts";
import tls from "node:tls";
import { join } from "node:path";
import { AcmeManager } from "../../lib/http/acme/manager.ts";
import { type CertInfo, CertStore } from "../../lib/http/certs.ts";
import { HttpEdge } from "../../lib/http/edge.ts";
import { RouteTable } from "../../lib/http/routes.ts";
import { echoHeadersApp, until } from "../helpers/http.ts";
import { pebbleMissing, startPebble } from "../helpers/pebble.ts";

const skipNote = pebbleMissing ? ` (skipped: ${pebbleMissing})` : "";
const LOOPBACK = { hostname: "127.0.0.1", port: 0 };

/** The certificate the edge presents for `servername`, verified against `ca`. */
function presented(port: number, servername: string, ca: string): Promise<tls.PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, ca }, () => {
      const cert = socket.getPeerCertificate();
      socket.destroy();
      resolve(cert);
    });
    socket.once("error", reject);
  });
}

async function world(options: { renewWithinMs?: number; serveChallenges?: boolean } = {}) {
  const stateDir = await makeTempDir({ prefix: "burrow-acme-" });
  const app = await echoHeadersApp("blog");
  const table = new RouteTable();
  table.claim({ id: "g/blog", group: "g", kind: "http", hosts: ["blog.acme.test"], paths: [] });
  const certs = new CertStore();
  let manager: AcmeManager | undefined;
  const edge = await HttpEdge.start({
    http: LOOPBACK,
    https: LOOPBACK,
    routes: table,
    certs,
    dial: () => Deno.connect({ hostname: "127.0.0.1", port: app.port }),
    acmeChallenge: (token) =>
      options.serveChallenges === false ? undefined : manager?.challenge(token),
  });
  const pebble = await startPebble(edge.httpAddr?.port ?? 0, 3600);
  const issued: { name: string; info: CertInfo }[] = [];
  const failed: { name: string; retryInMs: number }[] = [];
  const makeManager = () =>
    new AcmeManager({
      directory: pebble.directory,
      ca: pebble.tlsCa,
      email: "ops@acme.test",
      stateDir,
      certs,
      checkEveryMs: 200,
      retryInitialMs: 60_000,
      ...(options.renewWithinMs !== undefined ? { renewWithinMs: options.renewWithinMs } : {}),
      onIssued: (name, info) => issued.push({ name, info }),
      onFailed: (name, _err, retryInMs) => failed.push({ name, retryInMs }),
    });
  manager = makeManager();
  await manager.start();
  return {
    stateDir,
    edge,
    pebble,
    certs,
    issued,
    failed,
    get manager() {
      return manager as AcmeManager;
    },
    restart: async () => {
      manager?.close();
      manager = makeManager();
      await manager.start();
    },
    httpsPort: edge.httpsAddr?.port ?? 0,
    async [Symbol.asyncDispose]() {
      manager?.close();
      await manager?.settled();
      await edge.close();
      await app.close();
      await pebble[Symbol.asyncDispose]();
      await Deno.remove(stateDir, { recursive: true });
    },
  };
}

Deno.test({
  name:
    `a live app's name gets a certificate from Pebble over HTTP-01, kept 0600, reused after a restart${skipNote}`,
  ignore: pebbleMissing !== undefined,
  async fn() {
    await using w = await world();
    // A stranger asking for a name first: nothing is ordered for it.
    await presented(w.httpsPort, "stranger.acme.test", "").catch(() => {});
    w.manager.want(["blog.acme.test", "*.wild.acme.test"]);
    w.manager.want(["blog.acme.test"]); // a second call while the order runs: still one order
    await until(() => w.issued.length > 0 || w.failed.length > 0, "the order finished", 30_000);
    await w.manager.settled();
    assert.deepEqual(w.failed, []);
    assert.deepEqual(w.issued.map((i) => i.name), ["blog.acme.test"]);
    assert.deepEqual(w.issued[0]?.info.names, ["blog.acme.test"]);
    const root = await w.pebble.issuingRoot();
    const cert = await presented(w.httpsPort, "blog.acme.test", root);
    assert.equal(cert.subjectaltname, "DNS:blog.acme.test");
    assert.match(String(cert.issuer?.CN), /^Pebble Intermediate CA/);

    for (const file of ["account.key", "certs/blog.acme.test.crt", "certs/blog.acme.test.key"]) {
      const info = await Deno.stat(join(w.stateDir, "acme", file));
      assert.equal((info.mode ?? 0) & 0o777, 0o600, file);
    }
    const files = [...Deno.readDirSync(join(w.stateDir, "acme", "certs"))].map((e) => e.name)
      .sort();
    assert.deepEqual(files, ["blog.acme.test.crt", "blog.acme.test.key"], "nothing for strangers");

    // A restart finds the certificate in the state folder and orders nothing.
    await w.restart();
    w.manager.want(["blog.acme.test"]);
    await w.manager.settled();
    assert.equal(w.issued.length, 1, "no new order after a restart");
  },
});

Deno.test({
  name: `a certificate is renewed before it expires and the new one is served${skipNote}`,
  ignore: pebbleMissing !== undefined,
  async fn() {
    // Pebble issues for an hour; "renew within 3598 s of the end" makes it due two seconds on.
    await using w = await world({ renewWithinMs: 3598_000 });
    w.manager.want(["blog.acme.test"]);
    await until(() => w.issued.length >= 1, "the first certificate", 30_000);
    const root = await w.pebble.issuingRoot();
    const first = await presented(w.httpsPort, "blog.acme.test", root);
    await until(() => w.issued.length >= 2, "the renewal", 30_000);
    await w.manager.settled();
    const second = await presented(w.httpsPort, "blog.acme.test", root);
    assert.notEqual(second.serialNumber, first.serialNumber);
    assert.ok((w.issued[1]?.info.notAfter ?? 0) > (w.issued[0]?.info.notAfter ?? 0));
    // Names no longer wanted are not renewed.
    w.manager.unwant(["blog.acme.test"]);
    const count = w.issued.length;
    await new Promise((r) => setTimeout(r, 3000));
    await w.manager.settled();
    assert.equal(w.issued.length, count);
  },
});

Deno.test({
  name: `a failed validation backs off: one order, then no retry before the delay${skipNote}`,
  ignore: pebbleMissing !== undefined,
  async fn() {
    await using w = await world({ serveChallenges: false });
    w.manager.want(["blog.acme.test"]);
    await until(() => w.failed.length > 0, "the order failed", 30_000);
    await w.manager.settled();
    assert.equal(w.failed.length, 1);
    assert.ok((w.failed[0]?.retryInMs ?? 0) >= 30_000, "backoff starts near a minute");
    w.manager.want(["blog.acme.test"]);
    await new Promise((r) => setTimeout(r, 600)); // several renewal checks pass
    await w.manager.settled();
    assert.equal(w.failed.length, 1, "no new order while backing off");
    assert.deepEqual(w.issued, []);
    assert.match(w.pebble.log.text, /blog\.acme\.test/);
  },
});
