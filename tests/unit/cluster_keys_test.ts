/**
 * The cluster's flags and keys: `--cluster`, `--node`, `--relay`,
 * `--advertise` over `cluster.*`, the secret from `BURROW_CLUSTER_SECRET`
 * or the file, and one-line errors naming what to fix.
 *
 * @module
 */

import assert from "node:assert/strict";
import { loadServerConfig } from "../../lib/config/server_file.ts";
import { ConfigError } from "../../lib/util/errors.ts";

const SECRET = "a-shared-cluster-secret";
const env = (extra: Record<string, string> = {}) => (name: string) =>
  ({ BURROW_TOKEN: "tok", ...extra } as Record<string, string>)[name];

async function fails(flags: Record<string, string>, want: RegExp, extra = {}): Promise<void> {
  await assert.rejects(() => loadServerConfig(flags, env(extra)), (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, want);
    assert.ok(!err.message.includes("hunter2"), `leaks the store password: ${err.message}`);
    return true;
  });
}

Deno.test("no --cluster: no cluster", async () => {
  assert.equal((await loadServerConfig({}, env())).cluster, undefined);
});

Deno.test("--cluster with the secret from BURROW_CLUSTER_SECRET", async () => {
  const config = await loadServerConfig(
    { cluster: "redis://u:hunter2@10.0.0.5:6379/2", relay: "10.0.0.2:7800", node: "edge-1" },
    env({ BURROW_CLUSTER_SECRET: SECRET }),
  );
  assert.equal(config.cluster?.store, "redis://u:hunter2@10.0.0.5:6379/2");
  assert.equal(config.cluster?.node, "edge-1");
  assert.deepEqual(config.cluster?.relay, { hostname: "10.0.0.2", port: 7800 });
  assert.equal(config.cluster?.advertise, undefined);
  assert.equal(config.cluster?.secret.reveal(), SECRET);
  assert.equal(String(config.cluster?.secret), "***");
});

Deno.test("--cluster without a secret names BURROW_CLUSTER_SECRET", async () => {
  await fails(
    { cluster: "redis://u:hunter2@10.0.0.5:6379", relay: "10.0.0.2:7800" },
    /cluster\.secret: required with --cluster: set BURROW_CLUSTER_SECRET/,
  );
  await fails(
    { cluster: "redis://10.0.0.5:6379", relay: "10.0.0.2:7800" },
    /BURROW_CLUSTER_SECRET: must be at least 16 characters/,
    { BURROW_CLUSTER_SECRET: "short" },
  );
});

Deno.test("bad cluster flags are one-line errors naming the flag", async () => {
  const ok = { BURROW_CLUSTER_SECRET: SECRET };
  await fails({ cluster: "http://u:hunter2@x:1", relay: "a:1" }, /^--cluster: must be redis:/, ok);
  await fails({ cluster: "redis://x:1" }, /--relay HOST:PORT \(cluster\.relay\): required/, ok);
  await fails({ cluster: "redis://x:1", relay: "nope" }, /^--relay: expected HOST:PORT/, ok);
  await fails({ cluster: "redis://x:1", relay: "a:1", advertise: "b" }, /^--advertise: /, ok);
  await fails({ cluster: "redis://x:1", relay: "a:1", node: "a b" }, /^--node: must be 1-63/, ok);
  await fails({ node: "n1" }, /need --cluster URL \(cluster\.store\)/, ok);
});
