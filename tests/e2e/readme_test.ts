/**
 * The documentation holds: the README's embedding example runs as written,
 * the library prints nothing of its own (logging is the host program's to
 * configure), and the files under `examples/` load as written.
 */

import assert from "node:assert/strict";
import { echoApp, portBlock } from "../helpers/harness.ts";
import { loadUsersFile } from "../../lib/server/users.ts";
import { DEFAULT_LIMITS } from "../../mod.ts";

const root = new URL("../../", import.meta.url).pathname;

/** Runs TypeScript from a file beside mod.ts; returns exit code and output. */
async function runSnippet(code: string) {
  const file = `${root}.readme-snippet-${Deno.pid}.ts`;
  await Deno.writeTextFile(file, code);
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", file],
      cwd: root,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decode = (b: Uint8Array) => new TextDecoder().decode(b);
    return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
  } finally {
    await Deno.remove(file);
  }
}

Deno.test("the README's embedding example runs as written", async () => {
  const readme = await Deno.readTextFile(`${root}README.md`);
  const section = readme.slice(readme.indexOf("## Embedding (library)"));
  const block = section.match(/```ts\n([\s\S]*?)```/)?.[1];
  assert.ok(block, "no ts block in the embedding section");
  assert.match(block, /startServer\(/);
  // The example's tunnel points at 127.0.0.1:9000; nothing needs to listen there, as no user connects.
  const out = await runSnippet(block);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stderr, "", "the library printed on stderr");
  // The example prints the port, the services and the free ports.
  assert.match(out.stdout, /^\d+ \[/);
});

Deno.test("the library prints nothing unless the host program configures logging", async () => {
  const app = echoApp();
  const out = await runSnippet(`
    import { startClient, startServer } from "./mod.ts";
    const server = await startServer({ bind: "127.0.0.1:0", token: "q", ports: "${portBlock().spec}", publicHost: "127.0.0.1" });
    const client = await startClient({ server: \`127.0.0.1:\${server.addr.port}\`, token: "q", group: "quiet" });
    const tunnel = await client.expose({ name: "echo", local: "${app.addr}" });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.remotePort });
    await conn.write(new Uint8Array([1, 2, 3]));
    await conn.closeWrite();
    const buf = new Uint8Array(8);
    let got = 0;
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf.subarray(got))) got += n;
    conn.close();
    await client.expose({ name: "echo", local: "127.0.0.1:9" }).catch(() => {}); // a refusal, logged nowhere
    await client.close();
    await server.close();
    if (got !== 3) Deno.exit(9);
  `);
  app.close();
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stdout, "");
  assert.equal(out.stderr, "");
});

Deno.test("the example files load as written", async () => {
  const { loadClientConfig } = await import("../../lib/config/group_file.ts");
  const { loadServerConfig } = await import("../../lib/config/server_file.ts");
  const env = (name: string) =>
    ({ BURROW_TOKEN: "t", BURROW_TOKEN_HOME: "h", BURROW_TOKEN_CI: "c" })[name];
  const group = await loadClientConfig("examples/group.yaml", {}, env);
  assert.deepEqual(group.apps.find((a) => a.name === "db")?.allowFrom, [
    "203.0.113.0/24",
    "2001:db8::/32",
  ]);
  const server = await loadServerConfig({ config: "examples/server.yaml" }, env);
  assert.equal(server.limits.authFailures, DEFAULT_LIMITS.authFailures);
  const users = await loadUsersFile("examples/users.yaml", env);
  assert.deepEqual(users.map((u) => u.group), ["home-lab", "ci-*"]);
});
