/**
 * The config fixtures under `tests/fixtures/{client,server}/{valid,invalid}`
 * and the checks every loader test shares: the environment the fixtures
 * read, and what a good `ConfigError` looks like (one line, naming the
 * file, never quoting a secret).
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConfigError } from "../../lib/util/errors.ts";

/** The fixtures folder. */
export const FIXTURES = new URL("../fixtures/", import.meta.url);

/** The folder of one kind of fixture. */
export function fixtureDir(kind: "client" | "server", validity: "valid" | "invalid"): string {
  return decodeURIComponent(new URL(`${kind}/${validity}/`, FIXTURES).pathname);
}

/** The `.yaml` files in `dir`, sorted. */
export async function yamlFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(".yaml")) names.push(entry.name);
  }
  return names.sort();
}

/** The `# expect:` substring of an invalid fixture. */
export async function expectation(file: string): Promise<string> {
  const first = (await Deno.readTextFile(file)).split("\n")[0] ?? "";
  const m = /^# expect: (.+)$/.exec(first);
  assert.ok(m, `${file} must begin with "# expect: <substring>"`);
  return (m[1] as string).trimEnd();
}

/** Secret values used by the fixtures and the environment; none may appear in an error. */
export const SECRETS = [
  "fixture-secret-token",
  "env-secret-value-8d1f",
  "fixture-server-token",
  "fixture-dashboard-pass",
];

/**
 * The environment the fixtures expect, set for `fn` and left set: test
 * modules that `deno test --parallel` runs side by side share one process
 * environment, and restoring it would pull the variables from under another
 * module's fixtures. Only the fixtures read these names.
 */
export async function withFixtureEnv(fn: () => Promise<void>): Promise<void> {
  const vars: Record<string, string | undefined> = {
    BURROW_FIXTURE_TOKEN: "env-secret-value-8d1f",
    BURROW_FIXTURE_HOST: "relay.example.net",
    BURROW_FIXTURE_APP: "seven",
    BURROW_FIXTURE_PORT: "7007",
    BURROW_FIXTURE_UNSET: undefined,
  };
  for (const [name, value] of Object.entries(vars)) {
    if (value === undefined) Deno.env.delete(name);
    else Deno.env.set(name, value);
  }
  await fn();
}

/** The real environment, as the loaders read it. */
export const processEnv = (name: string) => Deno.env.get(name);

/** Asserts that `run` throws a one-line ConfigError naming the file with `expected` in it. */
export async function assertConfigError(
  run: () => Promise<unknown>,
  file: string | undefined,
  expected: string,
): Promise<void> {
  let caught: unknown;
  try {
    await run();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `${file ?? "flags"}: loaded, but should fail with "${expected}"`);
  assert.ok(caught instanceof ConfigError, `not a ConfigError: ${caught}`);
  const message = caught.message;
  if (file !== undefined) {
    assert.ok(message.startsWith(`${file}: `), `does not start with the file: ${message}`);
  }
  assert.ok(message.includes(expected), `"${message}" lacks "${expected}"`);
  assert.ok(!/[\r\n]/.test(message), `not one line: ${JSON.stringify(message)}`);
  for (const secret of SECRETS) assert.ok(!message.includes(secret), `leaks a token: ${message}`);
}
