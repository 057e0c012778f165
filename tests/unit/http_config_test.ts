/**
 * The web-app config keys (group file and server file) and the names and
 * `ready` URLs an app gets, as the contract's "App types" section fixes them.
 */

import assert from "node:assert/strict";
import { z } from "zod";
import {
  checkHttpServerKeys,
  checkTypeKeys,
  httpAppShape,
  httpServerShape,
  inspectField,
  webAppConfig,
} from "../../lib/config/http_keys.ts";
import { appNames, checkNames, readyUrls } from "../../lib/http/names.ts";

// What the group-file loader will build: its own keys plus these, with the type rules.
const app = z.strictObject({
  name: z.string(),
  local: z.string(),
  remote_port: z.int().optional(),
  proxy_protocol: z.enum(["v1", "v2"]).optional(),
  ...httpAppShape,
}).superRefine(checkTypeKeys);
const serverFile = z.strictObject({ ...httpServerShape }).superRefine(checkHttpServerKeys);

function issues(schema: z.ZodType, value: unknown): string[] {
  const r = schema.safeParse(value);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

Deno.test("group file: an http app with every key parses into its settings", () => {
  const entry = app.parse({
    name: "web",
    local: "127.0.0.1:3000",
    type: "http",
    subdomain: "blog",
    hostnames: ["WWW.Example.org", "*.team.example.org"],
    paths: ["/api", "/static/"],
    auth: { user: "alice", password: "s3cret" },
    host_header: "localhost:3000",
    https_only: true,
  });
  const web = webAppConfig(entry);
  assert.ok(web);
  assert.equal(web.type, "http");
  assert.deepEqual(web.hostnames, ["www.example.org", "*.team.example.org"]);
  assert.deepEqual(web.paths, ["/api", "/static/"]);
  assert.equal(web.auth?.user, "alice");
  assert.equal(String(web.auth?.password), "***", "the password is a Secret");
  assert.equal(web.hostHeader, "localhost:3000");
  assert.equal(web.httpsOnly, true);
  assert.equal(webAppConfig(app.parse({ name: "ssh", local: "127.0.0.1:22" })), undefined);
  assert.deepEqual(issues(inspectField, "127.0.0.1:4040"), []);
  assert.notDeepEqual(issues(inspectField, "4040"), []);
});

Deno.test("group file: keys that do not fit the app's type are errors naming the key", () => {
  assert.deepEqual(issues(app, { name: "a", local: "x:1", subdomain: "blog" }), [
    "subdomain: is not a key of a tcp app (set type: http or type: tls for names)",
  ]);
  assert.deepEqual(issues(app, { name: "a", local: "x:1", type: "http", remote_port: 8080 }), [
    "remote_port: is not a key of an http app",
  ]);
  assert.deepEqual(
    issues(app, {
      name: "a",
      local: "x:1",
      type: "tls",
      paths: ["/x"],
      auth: { user: "u", password: "p" },
    }),
    ["paths: is not a key of a tls app", "auth: is not a key of a tls app"],
  );
  assert.deepEqual(issues(app, { name: "a", local: "x:1", type: "udp", https_only: true }), [
    "https_only: is not a key of a udp app",
  ]);
  assert.deepEqual(issues(app, { name: "a", local: "x:1", type: "http", proxy_protocol: "v1" }), [
    "proxy_protocol: is not a key of an http app",
  ]);
  assert.deepEqual(issues(app, { name: "a", local: "x:1", type: "tls", proxy_protocol: "v2" }), []);
  assert.deepEqual(issues(app, { name: "a", local: "x:1", type: "gopher" }), [
    "type: must be tcp, http, tls or udp",
  ]);
  for (
    const [key, value] of [
      ["hostnames", ["blog.example.org:8080"]],
      ["hostnames", ["127.0.0.1"]],
      ["hostnames", []],
      ["paths", ["api"]],
      ["paths", ["/a b"]],
      ["paths", ["/a?b"]],
      ["auth", { user: "a:b", password: "p" }],
      ["auth", { user: "a", password: "" }],
      ["host_header", "evil\r\nx: y"],
    ] as const
  ) {
    const found = issues(app, { name: "a", local: "x:1", type: "http", [key]: value });
    assert.ok(
      found.length > 0 && found.every((i) => i.startsWith(key)),
      `${key} ${JSON.stringify(value)}: ${found}`,
    );
  }
});

Deno.test("server file: listeners, certificates, domain and acme keys, with their rules", () => {
  assert.deepEqual(
    issues(serverFile, {
      http: { bind: "0.0.0.0:80" },
      https: {
        bind: "0.0.0.0:443",
        cert: "wild.pem",
        key: "wild.key",
        certs: [{ cert: "a", key: "b" }],
      },
      domain: "tunnel.example.org",
      acme: { email: "ops@example.org", directory: "https://acme.example/dir", ca: "ca.pem" },
    }),
    [],
  );
  assert.deepEqual(issues(serverFile, { https: { bind: "0.0.0.0:443", cert: "a.pem" } }), [
    "https: cert and key go together",
  ]);
  assert.deepEqual(issues(serverFile, { acme: { email: "ops@example.org" } }), [
    "acme: needs http.bind (or --http): ACME's HTTP-01 challenges are answered there",
    "acme: needs https.bind (or --https): the certificates are served there",
  ]);
  assert.deepEqual(issues(serverFile, { domain: "localhost" }), [
    "domain: must be a domain name such as example.org",
  ]);
  assert.deepEqual(
    issues(serverFile, {
      http: { bind: "0.0.0.0:80" },
      https: { bind: ":443" },
      acme: { directory: "http://x/dir" },
    })
      .filter((i) => i.startsWith("acme")),
    ["acme.directory: must be an https:// URL"],
  );
});

Deno.test("names: SUBDOMAIN.DOMAIN or APP-GROUP.DOMAIN, plus hostnames, checked against hosts patterns", () => {
  assert.deepEqual(
    appNames({ group: "lab", app: "web", hostnames: [], domain: "tunnel.example.org" }),
    ["web-lab.tunnel.example.org"],
  );
  assert.deepEqual(
    appNames({
      group: "lab",
      app: "web",
      subdomain: "blog",
      hostnames: ["www.example.org", "Blog.Tunnel.example.org"],
      domain: "tunnel.example.org",
    }),
    ["blog.tunnel.example.org", "www.example.org"],
  );
  assert.deepEqual(appNames({ group: "lab", app: "web", hostnames: ["a.example.org"] }), [
    "a.example.org",
  ]);
  assert.equal(checkNames(["a.example.org"], undefined), undefined);
  assert.equal(
    checkNames(["blog.example.org", "x.team.example.org"], [
      "blog.example.org",
      "*.team.example.org",
    ]),
    undefined,
  );
  assert.deepEqual(checkNames(["blog.example.org", "evil.example.org"], ["blog.example.org"]), {
    code: "host_not_allowed",
    host: "evil.example.org",
    message: '"evil.example.org" is not among the hosts the users file allows this group',
  });
  assert.equal(checkNames([], undefined)?.code, "host_not_allowed");
});

Deno.test("ready URLs: only the schemes listened on, the port only when not the default", () => {
  assert.deepEqual(readyUrls("http", ["blog.example.org"], { http: 80, https: 443 }), [
    "https://blog.example.org/",
    "http://blog.example.org/",
  ]);
  assert.deepEqual(readyUrls("http", ["blog.localhost"], { http: 8080 }), [
    "http://blog.localhost:8080/",
  ]);
  assert.deepEqual(readyUrls("http", ["a.example.org", "b.example.org"], { https: 8443 }), [
    "https://a.example.org:8443/",
    "https://b.example.org:8443/",
  ]);
  assert.deepEqual(readyUrls("tls", ["db.example.org"], { http: 80, https: 443 }), [
    "tls://db.example.org:443",
  ]);
});
