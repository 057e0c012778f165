/**
 * The route table: names and prefixes as claims, lookups by host and path,
 * offline names, and the name checks used for claims and users-file hosts.
 */

import assert from "node:assert/strict";
import {
  nameAllowed,
  normalizeName,
  pathUnder,
  type Route,
  RouteTable,
} from "../../lib/http/routes.ts";

function route(id: string, hosts: string[], paths: string[] = [], kind: "http" | "tls" = "http") {
  const group = id.split("/")[0] as string;
  return { id, group, kind, hosts, paths } satisfies Route;
}

Deno.test("normalizeName lowercases, drops port and trailing dot, refuses what is not a name", () => {
  assert.equal(normalizeName("Blog.Example.ORG"), "blog.example.org");
  assert.equal(normalizeName("blog.example.org.:8443"), "blog.example.org");
  assert.equal(normalizeName("app.localhost"), "app.localhost");
  for (
    const bad of ["", ":80", "[::1]:80", "127.0.0.1", "a..b", "-a.b", "a b.c", "a.b:x", "é.org"]
  ) {
    assert.equal(normalizeName(bad), undefined, bad);
  }
  assert.equal(normalizeName("x".repeat(64) + ".org"), undefined);
  assert.equal(normalizeName("*.example.org"), undefined, "wildcards only where asked for");
  assert.equal(normalizeName("*.example.org", true), "*.example.org");
  assert.equal(normalizeName("*.org", true), undefined);
  assert.equal(normalizeName("a.*.org", true), undefined);
});

Deno.test("pathUnder matches whole segments only", () => {
  assert.ok(pathUnder("/anything", "/"));
  assert.ok(pathUnder("/api", "/api"));
  assert.ok(pathUnder("/api/v1", "/api"));
  assert.ok(pathUnder("/api?x=1", "/api"));
  assert.ok(!pathUnder("/apix", "/api"));
  assert.ok(pathUnder("/api/x", "/api/"));
  assert.ok(!pathUnder("/ap", "/api"));
});

Deno.test("lookups: exact name, then the nearest wildcard, then the longest prefix", () => {
  const table = new RouteTable();
  assert.deepEqual(table.claim(route("g/site", ["example.org"])), { ok: true });
  assert.deepEqual(table.claim(route("g/api", ["example.org"], ["/api"])), { ok: true });
  assert.deepEqual(table.claim(route("g/v2", ["example.org"], ["/api/v2"])), { ok: true });
  assert.deepEqual(table.claim(route("h/wild", ["*.example.org"])), { ok: true });
  assert.deepEqual(table.claim(route("k/deep", ["*.b.example.org"])), { ok: true });
  assert.deepEqual(table.claim(route("m/exact", ["a.b.example.org"])), { ok: true });

  const at = (host: string, path = "/") => table.match(host, path)?.route.id;
  assert.equal(at("example.org"), "g/site");
  assert.equal(at("example.org", "/api"), "g/api");
  assert.equal(at("example.org", "/api/v1/users"), "g/api");
  assert.equal(at("example.org", "/api/v2/users"), "g/v2");
  assert.equal(at("example.org", "/apis"), "g/site");
  assert.equal(at("x.example.org"), "h/wild");
  assert.equal(at("x.y.example.org"), "h/wild");
  assert.equal(at("c.b.example.org"), "k/deep");
  assert.equal(at("a.b.example.org"), "m/exact");
  assert.equal(at("example.net"), undefined);
  assert.equal(at("org"), undefined);
});

Deno.test("a name with only some prefixes claimed falls through to a wildcard for the rest", () => {
  const table = new RouteTable();
  table.claim(route("g/api", ["a.example.org"], ["/api"]));
  table.claim(route("h/wild", ["*.example.org"]));
  assert.equal(table.match("a.example.org", "/api/x")?.route.id, "g/api");
  assert.equal(table.match("a.example.org", "/other")?.route.id, "h/wild");
});

Deno.test("claims: one holder per name, shared by paths only within a group, all or none", () => {
  const table = new RouteTable();
  assert.deepEqual(table.claim(route("g/a", ["one.example.org", "two.example.org"])), { ok: true });
  assert.deepEqual(table.claim(route("h/b", ["three.example.org", "two.example.org"])), {
    ok: false,
    code: "host_taken",
    host: "two.example.org",
    holder: "g/a",
  });
  assert.equal(table.match("three.example.org", "/"), undefined, "a refused claim takes nothing");
  assert.equal(table.claim(route("h/c", ["one.example.org"], ["/api"])).ok, false, "other group");
  assert.equal(table.claim(route("g/c", ["one.example.org"], ["/"])).ok, false, "same prefix");
  assert.equal(table.claim(route("g/c", ["one.example.org"], ["/api"])).ok, true);
  assert.equal(
    table.claim(route("g/t", ["one.example.org"], ["/tls"], "tls")).ok,
    false,
    "a tls app never shares a name",
  );
  assert.equal(table.claim(route("g/a", ["one.example.org"])).ok, true, "same id: replaced");
  assert.equal(
    table.match("two.example.org", "/"),
    undefined,
    "the replaced claim's names are freed",
  );
});

Deno.test("offline names answer as offline until claimed by another app; release frees them", () => {
  const table = new RouteTable();
  table.claim(route("g/a", ["one.example.org", "two.example.org"]));
  table.setLive("g/a", false);
  assert.deepEqual(table.match("one.example.org", "/"), {
    route: table.get("g/a"),
    live: false,
  });
  assert.equal(table.claim(route("h/b", ["one.example.org"])).ok, true);
  assert.equal(table.match("one.example.org", "/")?.route.id, "h/b");
  assert.equal(table.match("two.example.org", "/")?.live, false);
  assert.deepEqual(table.claim(route("g/a", ["one.example.org", "two.example.org"])), {
    ok: false,
    code: "host_taken",
    host: "one.example.org",
    holder: "h/b",
  });
  assert.equal(table.claim(route("g/a", ["two.example.org"])).ok, true, "taken back while free");
  assert.equal(table.match("two.example.org", "/")?.live, true);
  table.release("g/a");
  table.release("h/b");
  assert.equal(table.match("two.example.org", "/"), undefined);
  assert.deepEqual(table.routes(), []);
});

Deno.test("nameAllowed: exact names and wildcard patterns at any depth", () => {
  const patterns = ["blog.example.org", "*.team.example.org"];
  assert.ok(nameAllowed("blog.example.org", patterns));
  assert.ok(nameAllowed("a.team.example.org", patterns));
  assert.ok(nameAllowed("x.a.team.example.org", patterns));
  assert.ok(nameAllowed("*.a.team.example.org", patterns));
  assert.ok(nameAllowed("*.team.example.org", patterns));
  assert.ok(!nameAllowed("team.example.org", patterns));
  assert.ok(!nameAllowed("evilteam.example.org", patterns));
  assert.ok(!nameAllowed("www.blog.example.org", patterns));
  assert.ok(!nameAllowed("blog.example.org", []));
});
