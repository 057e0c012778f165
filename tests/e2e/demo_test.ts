/** The README's demo command works on built-in defaults and proves the path. */

import assert from "node:assert/strict";

Deno.test("deno task demo --once fetches through the tunnel and exits 0", async () => {
  const root = new URL("../../", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "demo", "--once"],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  const url = stdout.match(/^public URL +(http:\/\/127\.0\.0\.1:(\d+)\/)$/m);
  assert.ok(url, stdout);
  assert.match(stdout, /^fetched +200 hello from the local app, you asked for \/through-burrow$/m);
  assert.match(stdout, new RegExp(`^server sees +demo/web on port ${url[2]}$`, "m"));
  assert.match(stderr, /demo\/web is live on 127\.0\.0\.1:\d+/);
  // The http app by its *.localhost name, through the server's shared HTTP listener.
  assert.match(stdout, /^by name +http:\/\/web\.demo\.localhost:\d+\/ /m);
  assert.match(stdout, /^fetched +200 hello from the local app, you asked for \/by-name$/m);
});
