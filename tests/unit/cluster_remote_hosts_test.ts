/**
 * The routes a node keeps for host names other nodes hold: a claim's meta
 * read strictly, a route per name in the node's own table (never over a
 * live local app), dropped when the name goes or comes here, and the
 * check of basic auth against the credentials' tag; the store keeps a
 * claim's meta.
 *
 * @module
 */

import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { RouteTable } from "../../lib/http/routes.ts";
import type { WebService } from "../../lib/http/service.ts";
import type { Claim } from "../../lib/cluster/store.ts";
import type { RelayDialer } from "../../lib/server/cluster/relay.ts";
import {
  isRemoteRoute,
  parseWebMeta,
  RemoteHosts,
  webMeta,
} from "../../lib/server/cluster/remote_hosts.ts";
import { RelayKeys } from "../../lib/server/cluster/relay_auth.ts";
import { Secret } from "../../lib/util/secret.ts";
import type { AuthCheck } from "../../lib/http/routes.ts";
import { REDIS_MISSING, startRedis } from "../helpers/redis.ts";
import { openStore } from "../helpers/cluster.ts";

const claimOf = (key: string, node: string, meta?: string): Claim => ({
  kind: "host",
  key,
  node,
  session: "s1",
  runId: "r1",
  token: 1,
  since: 0,
  expiresAt: Date.now() + 10_000,
  ...(meta === undefined ? {} : { meta }),
});

const keys = new RelayKeys(new Secret("the-cluster-secret-123"));

function setup() {
  const routes = new RouteTable();
  const dropped: string[] = [];
  const web = { routes, edge: { dropUpstream: (id: string) => dropped.push(id) } };
  const hosts = new RemoteHosts({
    self: "n1",
    log: getLogger(["burrow", "test"]),
    buffers: undefined as never,
    dialer: {} as RelayDialer,
    keys,
    holder: () => undefined,
    node: () => undefined,
    host: {
      web: () => web as unknown as WebService,
      webStream: () => Promise.resolve("none"),
    },
  });
  return { routes, dropped, hosts };
}

Deno.test("a web app's meta reads back; anything else is not one", () => {
  const meta = {
    type: "http" as const,
    group: "lab",
    app: "web",
    hostHeader: "x",
    httpsOnly: true,
  };
  assert.deepEqual(parseWebMeta(webMeta(meta)), meta);
  assert.equal(parseWebMeta(undefined), undefined);
  assert.equal(parseWebMeta("garbage"), undefined);
  assert.equal(parseWebMeta(JSON.stringify({ ...meta, type: "udp" })), undefined);
  assert.equal(parseWebMeta(JSON.stringify({ ...meta, extra: 1 })), undefined);
});

Deno.test("another node's name is routed here, dropped when it goes, never over a local app", () => {
  const { routes, hosts } = setup();
  const meta = webMeta({ type: "http", group: "lab", app: "web", hostHeader: "inner" });
  hosts.held(claimOf("site.example.net", "n2", meta));
  const match = routes.match("site.example.net", "/any");
  assert.ok(match && isRemoteRoute(match.route));
  assert.equal(match.route.group, "lab");
  assert.equal(match.route.hostHeader, "inner");
  assert.deepEqual(hosts.admit(match.route).ok, true);
  hosts.drop("site.example.net");
  assert.equal(routes.match("site.example.net", "/"), undefined);
  // A claim without meta, or one of this node, adds nothing.
  hosts.held(claimOf("bare.example.net", "n2"));
  hosts.held(claimOf("mine.example.net", "n1", meta));
  assert.deepEqual(hosts.hosts(), []);
  // A live local app keeps its name.
  const local = {
    id: "lab/own",
    group: "lab",
    kind: "http" as const,
    hosts: ["own.example.net"],
    paths: [],
  };
  assert.ok(routes.claim(local).ok);
  hosts.held(claimOf("own.example.net", "n2", meta));
  assert.equal(routes.match("own.example.net", "/")?.route, local);
  assert.deepEqual(hosts.hosts(), []);
});

Deno.test("an app with basic auth: other nodes check a user's credentials against its tag", async () => {
  const { routes, hosts } = setup();
  const tag = await keys.authTag("alice:wonderland");
  assert.ok(!tag.includes("wonderland"));
  const meta = webMeta({ type: "http", group: "g", app: "a", auth: tag });
  hosts.held(claimOf("safe.example.net", "n2", meta));
  const route = routes.match("safe.example.net", "/")!.route;
  assert.ok(route.auth && "check" in route.auth);
  const auth = route.auth as AuthCheck;
  assert.equal(await auth.check(`Basic ${btoa("alice:wonderland")}`), true);
  assert.equal(await auth.check(`Basic ${btoa("alice:wonderlane")}`), false);
  assert.equal(await auth.check(undefined), false);
  assert.equal(await auth.check("Basic !!!"), false);
  // Under another secret the tag proves nothing.
  const other = new RelayKeys(new Secret("another-secret-456789"));
  assert.equal(await other.checkAuthTag("alice:wonderland", tag), false);
  assert.equal(
    parseWebMeta(JSON.stringify({ type: "http", group: "g", app: "a", auth: "x" })),
    undefined,
  );
});

Deno.test({
  name: REDIS_MISSING === undefined
    ? "the store keeps a claim's meta, in its answer and in a snapshot"
    : `the store keeps a claim's meta (skipped: ${REDIS_MISSING})`,
  ignore: REDIS_MISSING !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using store = await openStore(redis.url);
    const owner = { node: "n1", session: "s1", runId: "r1" };
    const got = await store.claim(
      [{ kind: "host", key: "Site.Example.NET", meta: "m1" }],
      owner,
      5000,
    );
    assert.ok(got.ok);
    assert.equal(got.claims[0]?.meta, "m1");
    assert.equal(got.claims[0]?.key, "site.example.net");
    const snap = await store.snapshot();
    assert.ok(snap.ok);
    assert.equal(snap.snapshot.claims[0]?.meta, "m1");
  },
});
