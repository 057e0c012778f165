/**
 * Live reload end to end: the client follows its group file (untouched apps keep
 * their connections), the server reloads its port ranges on SIGHUP, and a
 * SIGHUP before the first connection is a reload, not an exit.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  echoApp,
  echoThrough,
  groupFile,
  localApp,
  portBlock,
  Proc,
  randomBytes,
  readAll,
  readyPort,
  sha256,
  startClient,
  startServer,
  waitRefused,
  writeAll,
} from "../helpers/harness.ts";
import { makeTempFile } from "../helpers/temp.ts";

const TOKEN = "reload-token-3x";

Deno.test("the client follows its group file: added, removed, changed, and untouched apps keep their connections", async () => {
  using echo = echoApp();
  using other = localApp(async (conn) => {
    await readAll(conn);
    await writeAll(conn, new TextEncoder().encode("the other app"));
  });
  await using server = await startServer({ token: TOKEN });
  const base = { server: `127.0.0.1:${server.port}`, token: TOKEN, group: "live" };
  const file = groupFile({
    ...base,
    apps: [
      { name: "keep", local: echo.addr },
      { name: "gone", local: echo.addr },
      { name: "moved", local: echo.addr },
    ],
  });
  await using client = startClient(file);
  const keepPort = await readyPort(client, "live", "keep");
  const gonePort = await readyPort(client, "live", "gone");
  await readyPort(client, "live", "moved");
  // A user of "keep" stays connected across the reload.
  const held = await Deno.connect({ hostname: "127.0.0.1", port: keepPort });
  const before = randomBytes(50_000);
  await writeAll(held, before);
  const mark = client.stdout.count;
  const rewritten = groupFile({
    ...base,
    apps: [
      { name: "keep", local: echo.addr },
      { name: "moved", local: other.addr },
      { name: "new", local: echo.addr },
    ],
  });
  await Deno.rename(rewritten, file); // as editors save
  await client.stderr.wait(
    /reloaded .* \(the file changed\): 1 added, 1 removed, 1 changed, 1 kept/,
  );
  const newPort = await readyPort(client, "live", "new", mark);
  const movedPort = await readyPort(client, "live", "moved", mark);
  await server.proc.stderr.wait(new RegExp(`live/gone closed; port ${gonePort} is free`));
  // The freed port may be picked again at once by "new" or "moved" (same block);
  // only if it was not must nothing listen there any more.
  if (gonePort !== newPort && gonePort !== movedPort) {
    assert.ok(await waitRefused(gonePort), "a removed app's port still accepts");
  }
  const moved = await Deno.connect({ hostname: "127.0.0.1", port: movedPort });
  await moved.closeWrite();
  assert.equal(new TextDecoder().decode(await readAll(moved)), "the other app");
  moved.close();
  const data = randomBytes(20_000);
  assert.equal(await echoThrough(newPort, data), await sha256(data));
  // The held connection of "keep" never noticed.
  const after = randomBytes(50_000);
  await writeAll(held, after);
  await held.closeWrite();
  const echoed = await readAll(held);
  held.close();
  const both = new Uint8Array(100_000);
  both.set(before);
  both.set(after, 50_000);
  assert.equal(await sha256(echoed as Uint8Array<ArrayBuffer>), await sha256(both));

  // A file that no longer validates is reported; the running apps stay.
  await Deno.writeTextFile(file, "group: live\napps: [\n");
  await client.stderr.wait(
    /reload \(the file changed\) failed, the running apps are kept: .*YAML syntax error/,
  );
  assert.equal(await echoThrough(keepPort, data), await sha256(data));

  // SIGHUP reloads too.
  await Deno.rename(groupFile({ ...base, apps: [{ name: "keep", local: echo.addr }] }), file);
  await client.stderr.wait(/reloaded .*: 0 added, 2 removed, 0 changed, 1 kept/);
  client.kill("SIGHUP");
  await client.stderr.wait(/reloaded .* \(SIGHUP\): 0 added, 0 removed, 0 changed, 1 kept/);
  assert.ok(await waitRefused(newPort));
});

Deno.test("the server reloads its port ranges on SIGHUP", async () => {
  const echo = echoApp();
  const [a, b] = [portBlock(5), portBlock(5)];
  const config = await makeTempFile({ suffix: ".yaml" });
  await Deno.writeTextFile(
    config,
    `bind: 127.0.0.1:0\ntoken: ${TOKEN}\nports: ${a.spec}\npublic_host: 127.0.0.1\n`,
  );
  const server = new Proc("server.ts", ["--config", config, "--log-level", "debug"]);
  try {
    const port = Number((await server.stdout.wait(/^listening 127\.0\.0\.1:(\d+)$/))[1]);
    const file = groupFile({
      server: `127.0.0.1:${port}`,
      token: TOKEN,
      group: "wants-b",
      apps: [{ name: "echo", local: echo.addr, remote_port: b.from }],
    });
    const early = startClient(file);
    assert.equal(await early.exitCode(), 3);
    assert.match(early.stderr.text, /port_not_allowed/);
    await Deno.writeTextFile(
      config,
      `bind: 127.0.0.1:0\ntoken: ${TOKEN}\nports: ${a.spec},${b.spec}\npublic_host: 127.0.0.1\n`,
    );
    server.kill("SIGHUP");
    await server.stderr.wait(new RegExp(`public ports are now ${a.spec},${b.spec}`));
    const late = startClient(file);
    try {
      assert.equal(await readyPort(late, "wants-b", "echo"), b.from);
    } finally {
      await late.stop();
    }
    // A bad file is reported and the ranges are kept.
    await Deno.writeTextFile(config, "ports: 9-1\n");
    server.kill("SIGHUP");
    await server.stderr.wait(
      /reload \(SIGHUP\) failed, the port ranges are kept: .*runs backwards/,
    );
  } finally {
    await server.stop();
    echo.close();
    await Deno.remove(config);
  }
});

Deno.test("SIGHUP before the first connection is a reload, not an exit", async () => {
  const unused = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = unused.addr.port;
  unused.close(); // nothing listens there: the client keeps retrying
  const file = groupFile({
    server: `127.0.0.1:${port}`,
    token: TOKEN,
    group: "early",
    apps: [{ name: "a", local: "127.0.0.1:9" }],
  });
  await using client = startClient(file);
  await client.stderr.wait(/cannot reach server .*retrying/);
  client.kill("SIGHUP");
  await client.stderr.wait(/reloaded .* \(SIGHUP\): 0 added, 0 removed, 0 changed, 1 kept/);
  client.kill("SIGTERM");
  assert.equal(await client.exitCode(), 0);
});
