/**
 * Per-group credentials and the users file (`lib/server/users.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Credentials, loadUsersFile } from "../../lib/server/users.ts";
import { ConfigError } from "../../lib/util/errors.ts";
import { Secret } from "../../lib/util/secret.ts";
import { makeTempDir } from "../helpers/temp.ts";

Deno.test("credentials: an exact name beats a prefix, the longest prefix wins, else the shared token", () => {
  const creds = new Credentials([
    { group: "ci-*", token: "ci", maxApps: 1 },
    { group: "ci-prod-*", token: "ci-prod" },
    { group: "ci-prod-7", token: "seven", ports: "6000-6010", maxConnections: 3 },
  ], new Secret("shared"));
  assert.equal(creds.lookup("ci-prod-7")?.token.reveal(), "seven");
  assert.deepEqual(creds.lookup("ci-prod-7")?.quota?.ports, [{ from: 6000, to: 6010 }]);
  assert.equal(creds.lookup("ci-prod-7")?.quota?.maxConnections, 3);
  assert.equal(creds.lookup("ci-prod-8")?.token.reveal(), "ci-prod");
  assert.equal(creds.lookup("ci-x")?.quota?.maxApps, 1);
  assert.equal(creds.lookup("home")?.token.reveal(), "shared");
  assert.equal(creds.lookup("home")?.quota, undefined);
  assert.equal(new Credentials([{ group: "a", token: "t" }]).lookup("b"), undefined);
  assert.throws(
    () => new Credentials([{ group: "a", token: "x" }, { group: "a", token: "y" }]),
    /users\[1\]\.group: "a" is listed twice/,
  );
  assert.throws(() => new Credentials([{ group: "Bad!", token: "x" }]), ConfigError);
});

Deno.test("users file: errors name the file, key and line, and never quote a token", async () => {
  const dir = await makeTempDir({ prefix: "burrow-users-" });
  try {
    const cases: Array<[string, RegExp]> = [
      [`- group: a\n  token: tok-secret-1\n  ports: 9-8\n`, /users\.yaml: \[0\]\.ports \(line 3\)/],
      [
        `- group: a\n  token: tok-secret-1\n- group: a\n  token: tok-secret-2\n`,
        /\[1\]\.group \(line 3\): "a" is listed twice/,
      ],
      [`- group: a\n  token: tok-secret-1\n  max_apps: -1\n`, /\[0\]\.max_apps \(line 3\)/],
      [`- group: a\n  token: tok-secret-1\n  tokn: x\n`, /\[0\]\.tokn \(line 3\): unknown key/],
      [`group: a\n`, /must be a list of groups/],
    ];
    for (const [text, expected] of cases) {
      await Deno.writeTextFile(`${dir}/users.yaml`, text);
      const err = await loadUsersFile(`${dir}/users.yaml`, () => undefined).then(
        () => assert.fail(`accepted:\n${text}`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, expected);
      assert.ok(!err.message.includes("tok-secret"), err.message);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("users file: hosts restrict a group's web names, normalised; a bad pattern names its key", async () => {
  const dir = await makeTempDir({ prefix: "burrow-users-" });
  const file = `${dir}/users.yaml`;
  await Deno.writeTextFile(
    file,
    '- group: blog\n  token: t1\n  hosts: [Blog.Example.org, "*.team.example.org"]\n- group: open\n  token: t2\n',
  );
  const specs = await loadUsersFile(file, () => undefined);
  assert.deepEqual(specs[0]?.hosts, ["Blog.Example.org", "*.team.example.org"]);
  const credentials = new Credentials(specs);
  assert.deepEqual(credentials.lookup("blog")?.quota?.hosts, [
    "blog.example.org",
    "*.team.example.org",
  ]);
  assert.equal(credentials.lookup("open")?.quota?.hosts, undefined, "no hosts: any free name");
  await Deno.writeTextFile(file, "- group: blog\n  token: t1\n  hosts: [blog.example.org:80]\n");
  await assert.rejects(
    loadUsersFile(file, () => undefined),
    (err) => err instanceof ConfigError && /hosts/.test(err.message) && !err.message.includes("t1"),
  );
});
