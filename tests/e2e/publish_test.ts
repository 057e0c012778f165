/**
 * The package is publishable as it stands: `deno doc --lint mod.ts` finds no
 * undocumented export or missing type, and `deno publish --dry-run` finds no
 * slow type, no missing license and no warning, and publishes the library
 * (with the dashboard's page files, which the server imports as text) but
 * not the tests, benchmarks or build scripts. Neither command needs the
 * network once the npm packages are cached; should the dry run fail only
 * for want of the network, the test is registered as ignored with the
 * reason, never as passed.
 */

import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url).pathname;

/** Runs `deno ARGS` in the repository; returns its exit code and all it printed. */
async function deno(...args: string[]): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, output: decode(out.stdout) + decode(out.stderr) };
}

const publish = await deno("publish", "--dry-run", "--allow-dirty");
const offline = publish.code !== 0 &&
    /error sending request|dns error|failed to lookup|network is unreachable|connection refused/i
      .test(publish.output)
  ? "deno publish --dry-run needs the network here"
  : undefined;
const skipNote = offline ? ` (skipped: ${offline})` : "";

/** The files the dry run would publish, as paths from the repository root. */
function publishedFiles(output: string): string[] {
  return [...output.matchAll(/file:\/\/(\S+) \(/g)].map((m) => (m[1] as string).replace(root, ""));
}

Deno.test("deno doc --lint finds nothing to fix in mod.ts", async () => {
  const { code, output } = await deno("doc", "--lint", "mod.ts");
  assert.equal(code, 0, output);
  assert.doesNotMatch(output, /^\s*(warning|error)/im, output);
});

Deno.test({
  name: `deno publish --dry-run is clean and publishes the library only${skipNote}`,
  ignore: offline !== undefined,
  fn() {
    assert.equal(publish.code, 0, publish.output);
    assert.match(publish.output, /Success Dry run complete/);
    assert.doesNotMatch(publish.output, /^\s*(warning|error)/im, publish.output);
    const files = publishedFiles(publish.output);
    for (
      const file of [
        "LICENSE",
        "README.md",
        "mod.ts",
        "lib/dashboard/page.ts",
        "lib/dashboard/assets/index.html",
        "lib/dashboard/assets/app.css",
        "lib/dashboard/assets/app.js",
        "lib/dashboard/assets/favicon.svg",
      ]
    ) {
      assert.ok(files.includes(file), `${file} is not published: ${files.join(", ")}`);
    }
    const stray = files.filter((f) => /^(tests|bench|scripts|examples|dist)\//.test(f));
    assert.deepEqual(stray, [], "tests, benchmarks and build scripts stay out of the package");
  },
});
