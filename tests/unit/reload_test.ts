/**
 * Live reload's decisions (`lib/client/reload.ts`): which apps of a changed
 * group file are added, removed, changed or kept, and which keys need a
 * restart. The reloads themselves run end to end in `tests/e2e/reload_test.ts`.
 */

import assert from "node:assert/strict";
import { diffApps, restartKeys } from "../../lib/client/reload.ts";
import type { AppConfig, ClientConfig } from "../../lib/config/group_file.ts";
import { Secret } from "../../lib/util/secret.ts";

const app = (name: string, port: number, remotePort = 0): AppConfig => ({
  name,
  local: { hostname: "127.0.0.1", port },
  remotePort,
});

Deno.test("diffApps sorts apps into added, removed, changed and kept; restartKeys names fixed keys", () => {
  const diff = diffApps(
    [app("keep", 1), app("gone", 2), app("moved", 3), app("repoint", 4, 6000)],
    [app("keep", 1), app("moved", 30), app("repoint", 4, 6001), app("new", 5)],
  );
  assert.deepEqual(diff.keep, ["keep"]);
  assert.deepEqual(diff.remove, ["gone"]);
  assert.deepEqual(diff.change.map((a) => a.name), ["moved", "repoint"]);
  assert.deepEqual(diff.add.map((a) => a.name), ["new"]);
  const config = (over: Partial<ClientConfig>): ClientConfig => ({
    file: "g.yaml",
    server: [{ hostname: "127.0.0.1", port: 7700 }],
    token: new Secret("a"),
    group: "g",
    shared: false,
    heartbeatInterval: 10,
    logLevel: "info",
    apps: [],
    tls: {},
    ...over,
  });
  assert.deepEqual(restartKeys(config({}), config({ apps: [app("x", 1)] })), []);
  assert.deepEqual(
    restartKeys(config({}), config({ token: new Secret("b"), group: "h", heartbeatInterval: 5 })),
    ["token", "group", "heartbeat_interval"],
  );
});
