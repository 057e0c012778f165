/**
 * The server's web app (lib/server/web_app.ts) without sockets: admission
 * by the group's quota (requests in flight count, 503 beyond it, counted
 * as a `group_quota` turn-away), round robin over healthy replicas, a dial
 * that passes over a replica that cannot reach its service (the stream
 * then marked `elsewhere`), the PROXY addresses in `start`, and leaving.
 */

import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import type { Start } from "../../lib/protocol/protocol.ts";
import type { Route } from "../../lib/http/routes.ts";
import { WebApp, type WebSession } from "../../lib/server/web_app.ts";
import type { WorkStream } from "../../lib/server/work_conn.ts";

const ROUTE: Route = { id: "farm/site", group: "farm", kind: "http", hosts: ["site.t"], paths: [] };
const NO_STREAM = {
  read: () => Promise.resolve(null),
  write: (p: Uint8Array) => Promise.resolve(p.length),
  closeWrite: () => Promise.resolve(),
  close: () => {},
};

/** A session whose client reaches its service unless `down`; its quota is `max` open requests. */
function session(id: string, app: () => WebApp | undefined, max = Infinity) {
  const starts: Start[] = [];
  const s = {
    id,
    group: "farm",
    clientAddr: `10.0.0.${id}:1`,
    ended: false,
    down: false,
    starts,
    nextWorkId: () => starts.length + 1,
    groupFull: () => (app()?.inFlight ?? 0) >= max ? "full" : undefined,
    work: {
      idle: 1,
      take: (): Promise<WorkStream> =>
        Promise.resolve({
          stream: NO_STREAM,
          start: (start: Start) => {
            starts.push(start);
            return Promise.resolve();
          },
          started: () =>
            s.down
              ? Promise.reject(new Error("client could not reach the app"))
              : Promise.resolve(new Uint8Array(0)),
          reset: () => {},
        }),
    },
  };
  return s;
}

function setUp(max = Infinity) {
  const turned: string[] = [];
  // deno-lint-ignore prefer-const -- the sessions read it through a closure before it is made
  let app: WebApp | undefined;
  const a = session("1", () => app, max);
  const b = session("2", () => app, max);
  const services = {
    log: getLogger(["test"]),
    monitor: {
      userTurnedAway: (g: string, n: string, cause: string) => turned.push(`${g}/${n} ${cause}`),
      replicaHealth: () => {},
    },
  };
  app = new WebApp(services, {
    route: ROUTE,
    app: "site",
    urls: ["http://site.t/"],
    shape: { type: "http", names: ["site.t"], paths: [] },
    first: a as WebSession,
  });
  return { app, a, b, turned };
}

Deno.test("web app: requests in flight count toward the quota; beyond it 503, counted", () => {
  const { app, turned } = setUp(2);
  const one = app.admit();
  const two = app.admit();
  assert.ok(one.ok && two.ok);
  const three = app.admit();
  assert.equal(three.ok, false);
  assert.equal(!three.ok && three.status, 503);
  assert.deepEqual(turned, ["farm/site group_quota"]);
  one.ticket.done();
  one.ticket.done(); // idempotent
  assert.equal(app.inFlight, 1);
  assert.ok(app.admit().ok, "room again");
});

Deno.test("web app: round robin over healthy replicas; none healthy is 502", () => {
  const { app, a, b } = setUp();
  app.addReplica(b as WebSession);
  const targets = () => {
    const r = app.admit();
    assert.ok(r.ok);
    r.ticket.done();
    return r.ticket.target;
  };
  assert.deepEqual([targets(), targets(), targets(), targets()], ["1", "2", "1", "2"]);
  app.setHealth(b as WebSession, false, "probe failed");
  assert.deepEqual([targets(), targets()], ["1", "1"]);
  app.setHealth(a as WebSession, false, "probe failed");
  const none = app.admit();
  assert.equal(!none.ok && none.status, 502);
});

Deno.test("web app: a replica that cannot reach its service is passed over; the stream says so", async () => {
  const { app, a, b } = setUp();
  app.addReplica(b as WebSession);
  a.down = true;
  const user = {
    source: { hostname: "203.0.113.7", port: 5555 },
    destination: { hostname: "198.51.100.1", port: 443 },
  };
  const stream = await app.dial("1", user);
  assert.equal(stream.elsewhere, true, "opened on another replica than asked");
  assert.equal(a.starts.length, 1, "the asked one was tried first");
  assert.deepEqual(b.starts[0]?.source, user.source, "start carries the user's address");
  assert.deepEqual(b.starts[0]?.destination, user.destination);
  assert.notEqual((await app.dial("2")).elsewhere, true, "opened where asked");
  b.down = true;
  await assert.rejects(app.dial("2"), /could not reach/);
});

Deno.test("web app: a replica leaving removes only itself; the last one frees the names", () => {
  const { app, a, b } = setUp();
  app.addReplica(b as WebSession);
  const calls: string[] = [];
  const web = {
    edge: { dropUpstream: (id: string, target?: string) => calls.push(`drop ${id} ${target}`) },
    setLive: (id: string, live: boolean) => calls.push(`live ${id} ${live}`),
    release: (id: string) => calls.push(`release ${id}`),
  };
  app.leave(a as WebSession, web, false);
  assert.deepEqual(calls, ["drop farm/site 1"]);
  assert.equal(app.replicas().length, 1);
  app.leave(b as WebSession, web, false);
  assert.deepEqual(calls.at(-1), "release farm/site");
});
