/**
 * The session's decisions about shared groups in `lib/server/shared_apps.ts`:
 * replicas of one app must agree on its type (a port or web names).
 */

import assert from "node:assert/strict";
import { replicaTypeMismatch } from "../../lib/server/shared_apps.ts";
import type { Expose } from "../../lib/protocol/protocol.ts";

const member = (apps: string[], webApps: string[]) => ({
  group: "farm",
  apps: new Map(apps.map((a) => [a, {}])),
  webApps: new Map(webApps.map((a) => [a, {}])),
});
const tcp = { type: "expose", id: 1, app: "web", port: 0 } as unknown as Expose;
const http = {
  type: "expose",
  id: 2,
  app: "web",
  port: 0,
  web: { type: "http" },
} as unknown as Expose;

Deno.test("replicas must agree on an app's type: a port against web names is refused", () => {
  const self = member([], []);
  const onPort = member(["web"], []);
  const byName = member([], ["web"]);
  const tcpVsWeb = replicaTypeMismatch([self, byName], self, tcp);
  assert.match(
    tcpVsWeb ?? "",
    /served by other replicas as a web app by name.*a port \(type tcp\)/,
  );
  const webVsTcp = replicaTypeMismatch([self, onPort], self, http);
  assert.match(webVsTcp ?? "", /as a tcp app on a port, this one asks for type http/);
  // The same kind, another app's name, or only itself: no refusal here.
  assert.equal(replicaTypeMismatch([self, onPort], self, tcp), undefined);
  assert.equal(replicaTypeMismatch([self, byName], self, http), undefined);
  assert.equal(replicaTypeMismatch([self, member(["db"], ["blog"])], self, http), undefined);
  assert.equal(replicaTypeMismatch([onPort], onPort, http), undefined);
});
