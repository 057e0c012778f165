/**
 * The web service as the server will use it: certificate files loaded (and
 * bad ones named), listeners bound and announced, claims by name with
 * `host_taken` and `host_not_allowed`, `ready` URLs, offline names answering
 * 502, released names 404, and requests reaching the app over `dial`.
 */

import assert from "node:assert/strict";
import { makeTempDir } from "../helpers/temp.ts";
import { join } from "node:path";
import { type WebAppSettings, WebService } from "../../lib/http/service.ts";
import { ConfigError } from "../../lib/util/errors.ts";
import { echoHeadersApp, request, testCa } from "../helpers/http.ts";

const LOOPBACK = { hostname: "127.0.0.1", port: 0 };

function web(extra: Partial<WebAppSettings> = {}): WebAppSettings {
  return { type: "http", hostnames: [], paths: [], httpsOnly: false, ...extra };
}

Deno.test("claims, refusals, URLs and routing through a started web service", async () => {
  const dir = await makeTempDir({ prefix: "burrow-web-" });
  const ca = await testCa("service CA");
  const wild = await ca.issue(["*.tunnel.example.test"]);
  await Deno.writeTextFile(join(dir, "wild.crt"), wild.cert);
  await Deno.writeTextFile(join(dir, "wild.key"), wild.key);
  await using app = await echoHeadersApp("blog");
  const service = await WebService.start({
    http: LOOPBACK,
    https: LOOPBACK,
    domain: "tunnel.example.test",
    defaultCert: { cert: join(dir, "wild.crt"), key: join(dir, "wild.key") },
    dial: () => Deno.connect({ hostname: "127.0.0.1", port: app.port }),
  });
  try {
    const { http, https } = service.ports;
    assert.deepEqual(service.lines(), [
      `http http://127.0.0.1:${http}/`,
      `https https://127.0.0.1:${https}/`,
    ]);
    const blog = service.claim({
      id: "lab/blog",
      group: "lab",
      app: "blog",
      web: web({ subdomain: "blog" }),
    });
    assert.ok(blog.ok);
    assert.equal(blog.route, service.routes.get("lab/blog"));
    assert.deepEqual({ ...blog, route: undefined }, {
      route: undefined,
      ok: true,
      names: ["blog.tunnel.example.test"],
      urls: [
        `https://blog.tunnel.example.test:${https}/`,
        `http://blog.tunnel.example.test:${http}/`,
      ],
    });
    const deflt = service.claim({ id: "lab/api", group: "lab", app: "api", web: web() });
    assert.equal(deflt.ok && deflt.names[0], "api-lab.tunnel.example.test");
    assert.deepEqual(
      service.claim({ id: "other/x", group: "other", app: "x", web: web({ subdomain: "blog" }) }),
      {
        ok: false,
        code: "host_taken",
        message: '"blog.tunnel.example.test" is held by another app',
      },
    );
    assert.deepEqual(
      service.claim(
        { id: "other/y", group: "other", app: "y", web: web({ hostnames: ["www.example.test"] }) },
        ["*.other.example.test"],
      ),
      {
        ok: false,
        code: "host_not_allowed",
        message:
          '"y-other.tunnel.example.test" is not among the hosts the users file allows this group',
      },
    );
    const seen = JSON.parse((await request(http ?? 0, "blog.tunnel.example.test")).body);
    assert.equal(seen.app, "blog");
    service.setLive("lab/blog", false);
    assert.equal((await request(http ?? 0, "blog.tunnel.example.test")).status, 502);
    service.setLive("lab/blog", true);
    assert.equal((await request(http ?? 0, "blog.tunnel.example.test")).status, 200);
    // A takeover: the group came back (same id) before its old session's end was handled.
    const old = service.routes.get("lab/blog");
    const again = service.claim({
      id: "lab/blog",
      group: "lab",
      app: "blog",
      web: web({ subdomain: "blog" }),
    });
    assert.ok(again.ok && again.route !== old);
    service.setLive("lab/blog", false, old);
    service.release("lab/blog", old);
    assert.equal(
      (await request(http ?? 0, "blog.tunnel.example.test")).status,
      200,
      "the old claim no longer speaks",
    );
    service.release("lab/blog");
    assert.equal((await request(http ?? 0, "blog.tunnel.example.test")).status, 404);
    assert.equal(
      service.claim({ id: "other/x", group: "other", app: "x", web: web({ subdomain: "blog" }) })
        .ok,
      true,
      "a released name is free",
    );
  } finally {
    await service.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("certificate and listener problems are errors naming the key and the file", async () => {
  const dir = await makeTempDir({ prefix: "burrow-web-" });
  try {
    const dial = () => Promise.reject(new Error("unused"));
    await assert.rejects(
      WebService.start({ https: LOOPBACK, dial }),
      (err) => err instanceof ConfigError && /https: no certificate/.test(err.message),
    );
    await assert.rejects(
      WebService.start({
        https: LOOPBACK,
        defaultCert: { cert: join(dir, "missing.crt"), key: join(dir, "missing.key") },
        dial,
      }),
      (err) =>
        err instanceof ConfigError &&
        err.message.startsWith(`https.cert: cannot read "${dir}/missing.crt"`),
    );
    await Deno.writeTextFile(join(dir, "bad.crt"), "not a certificate");
    await Deno.writeTextFile(join(dir, "bad.key"), "not a key");
    await assert.rejects(
      WebService.start({
        https: LOOPBACK,
        certs: [{ cert: join(dir, "bad.crt"), key: join(dir, "bad.key") }],
        dial,
      }),
      (err) => err instanceof ConfigError && err.message.startsWith("https.certs[0]:"),
    );
    await assert.rejects(
      WebService.start({ https: LOOPBACK, acme: { stateDir: dir }, dial }),
      (err) => err instanceof ConfigError && /acme: needs --http/.test(err.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("https_only on a service without --https is refused as bad_request, naming the fix", async () => {
  const service = await WebService.start({
    http: LOOPBACK,
    dial: () => Promise.reject(new Error("never dialled")),
  });
  try {
    const web = (httpsOnly: boolean) => ({
      type: "http" as const,
      hostnames: ["secure.example.test"],
      paths: [],
      httpsOnly,
    });
    const refused = service.claim({
      id: "lab/secure",
      group: "lab",
      app: "secure",
      web: web(true),
    });
    assert.equal(refused.ok, false);
    assert.ok(!refused.ok && refused.code === "bad_request");
    assert.match(!refused.ok ? refused.message : "", /https_only: .*no --https listener.*--https/);
    assert.deepEqual(service.apps(), [], "nothing was claimed");
    const plain = service.claim({ id: "lab/secure", group: "lab", app: "secure", web: web(false) });
    assert.ok(
      plain.ok,
      `without https_only the app is served on plain HTTP: ${JSON.stringify(plain)}`,
    );
  } finally {
    await service.close();
  }
});
