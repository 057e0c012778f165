/**
 * Property-based fuzzing (fast-check) of config loading: `loadClientConfig`
 * and `loadServerConfig` over `lib/config/file.ts`. Whatever a file holds,
 * the loader returns a config that keeps every documented bound, or throws a
 * one-line `ConfigError` naming the file, that never quotes the token or a
 * value that came from the environment. Fixed seed by default; see
 * `tests/helpers/fuzz.ts` for `FC_SEED` and `FC_RUNS`.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { parse, stringify } from "yaml";
import { type ClientConfig, loadClientConfig } from "../../lib/config/group_file.ts";
import { ConfigError } from "../../lib/util/errors.ts";
import { NAME_PATTERN } from "../../lib/protocol/protocol.ts";
import { MAX_APPS_PER_GROUP } from "../../lib/config/limits.ts";
import { Secret } from "../../lib/util/secret.ts";
import { loadServerConfig, type ServerConfig } from "../../lib/config/server_file.ts";
import { assertPrototypeClean, fuzz, prototypeSnapshot } from "../helpers/fuzz.ts";
import { makeTempDir } from "../helpers/temp.ts";

/** A value only the environment holds; no error may quote it. */
const ENV_SECRET = "Zq7envSecretValue";
const ENV: Record<string, string> = {
  BURROW_SECRET: ENV_SECRET,
  BURROW_PORT: "7007",
  BURROW_HOST: "relay.example.net",
  BURROW_APP: "seven",
};
/** Like the compiled programs: anything outside BURROW_* cannot be read at all. */
function getEnv(name: string): string | undefined {
  if (!name.startsWith("BURROW_")) throw new Deno.errors.NotCapable(`env access to ${name}`);
  return ENV[name];
}

/**
 * Tokens: a marker no message contains by itself, then characters that YAML,
 * regular expressions and quoting treat specially, so masking has to cope.
 */
const secret = fc.tuple(
  fc.constantFrom("", "*", "&", "!", "@", "%", "'", '"', "-", "?", "[", "{"),
  fc.stringMatching(/^[A-Za-z0-9]{4,12}$/),
  fc.stringMatching(/^[A-Za-z0-9 .*+?^${}()|[\]\\"'#:,&!%@`-]{0,8}$/),
).map(([lead, core, tail]) => `${lead}Zq7${core}${tail}`);

// ---- text that is YAML only in part --------------------------------------------

const KEYS = [
  "server",
  "token",
  "group",
  "heartbeat_interval",
  "apps",
  "name",
  "local",
  "remote_port",
  "description",
  "bind",
  "no_auth",
  "ports",
  "public_host",
  "heartbeat_timeout",
  "log_level",
  "__proto__",
  "constructor",
  "toString",
  "<<",
];

/** Pieces of YAML, right and wrong: keys, values, indicators, tags, anchors and aliases. */
function fragment(token: string): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constantFrom(...KEYS).map((k) => `${k}:`),
    fc.constantFrom(
      ":",
      ": ",
      "- ",
      "? ",
      "[",
      "]",
      "{",
      "}",
      ",",
      "&a ",
      "*a",
      "!!str ",
      "!!binary ",
      "!!set ",
      "!!map ",
      "!!omap ",
      "!custom ",
      "|",
      ">-",
      "# comment",
      "---",
      "...",
      "%YAML 1.2",
      "'",
      '"',
      "\t",
      "\\",
      "~",
      "null",
      "true",
      "0x1F",
      "1e3",
      ".inf",
      "-.inf",
      ".nan",
      "127.0.0.1:7700",
      "[::1]:80",
      "6000-6100,7022",
      "lab",
      "debug",
      "${BURROW_SECRET}",
      "${BURROW_PORT}",
      "${BURROW_UNSET}",
      "${HOME}",
      "${",
      "\u0000",
      "\u001b[31m",
      "\u2028",
    ),
    fc.constant(token),
    fc.constantFrom("*", "&", "!", '"', "'").map((c) => `${c}${token}`),
    fc.string({ maxLength: 12 }),
    fc.integer().map(String),
  );
}

function yamlish(token: string): fc.Arbitrary<string> {
  const line = fc.tuple(
    fc.nat(6).map((n) => " ".repeat(n)),
    fc.array(fragment(token), { maxLength: 5 }),
    fc.constantFrom("", " "),
  ).map(([indent, parts, sep]) => indent + parts.join(sep));
  return fc.tuple(fc.array(line, { maxLength: 12 }), fc.constantFrom("\n", "\r\n"))
    .map(([lines, eol]) => lines.join(eol));
}

// ---- objects that are configs, nearly ------------------------------------------

const nameArb = fc.stringMatching(NAME_PATTERN);
const hostPortArb = fc.tuple(
  fc.constantFrom("127.0.0.1", "::1", "relay.example.net", "localhost", "${BURROW_HOST}"),
  fc.integer({ min: 0, max: 65535 }),
).map(([h, p]) => (h.includes(":") ? `[${h}]:${p}` : `${h}:${p}`));

function anyValue(token: string): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        token,
        "${BURROW_SECRET}",
        "${BURROW_PORT}",
        "${BURROW_UNSET}",
        "${HOME}",
        `${token}:80`,
        `[${token}]:80`,
        "",
        "a\nb",
        "tab\there",
        "\u001b[2J",
        -1,
        0,
        65536,
        1.5,
        86_401,
      ),
    },
    { weight: 1, arbitrary: nameArb },
    { weight: 1, arbitrary: hostPortArb },
  );
}

/** Applies edits (set or delete a key, at the top or in the first app) to `base`. */
function edited(
  base: fc.Arbitrary<Record<string, unknown>>,
  token: string,
): fc.Arbitrary<Record<string, unknown>> {
  const edit = fc.tuple(
    fc.boolean(),
    fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 8 }), fc.constant(token)),
    fc.option(anyValue(token), { freq: 4 }),
  );
  return fc.tuple(base, fc.array(edit, { maxLength: 3 })).map(([config, edits]) => {
    const out = structuredClone(config);
    for (const [inApp, key, value] of edits) {
      const apps = out.apps;
      const target = inApp && Array.isArray(apps) && typeof apps[0] === "object" && apps[0] !== null
        ? apps[0] as Record<string, unknown>
        : out;
      // defineProperty, so that a `__proto__` key is an own key as YAML gives it.
      if (value === null) delete target[key];
      else {Object.defineProperty(target, key, {
          value,
          enumerable: true,
          writable: true,
          configurable: true,
        });}
    }
    return out;
  });
}

function clientObject(token: string, edits = true): fc.Arbitrary<Record<string, unknown>> {
  const app = fc.record({
    name: nameArb,
    local: hostPortArb,
    remote_port: fc.integer({ min: 0, max: 65535 }),
    description: fc.string({ maxLength: 40 }),
  }, { requiredKeys: ["name", "local"], noNullPrototype: true });
  const base = fc.record({
    server: hostPortArb,
    token: fc.constantFrom(token, "${BURROW_SECRET}"),
    group: nameArb,
    heartbeat_interval: fc.double({ min: 0.001, max: 86_400, noNaN: true }),
    apps: fc.array(app, { minLength: 1, maxLength: 4 }),
  }, {
    // Unedited (for one hostile value), the file is complete so that only that value decides.
    requiredKeys: edits ? ["group", "apps"] : ["server", "token", "group", "apps"],
    noNullPrototype: true,
  });
  return edits ? edited(base, token) : base;
}

function serverObject(token: string, edits = true): fc.Arbitrary<Record<string, unknown>> {
  const base = fc.record({
    bind: hostPortArb,
    token: fc.constantFrom(token, "${BURROW_SECRET}"),
    no_auth: fc.boolean(),
    ports: fc.oneof(
      fc.constantFrom("6000-6100,7022", "10000-20000", "${BURROW_PORT}"),
      fc.integer({ min: 1, max: 65535 }),
    ),
    public_host: fc.constantFrom("0.0.0.0", "tunnel.example.com", "${BURROW_HOST}"),
    heartbeat_timeout: fc.double({ min: 0.001, max: 86_400, noNaN: true }),
    log_level: fc.constantFrom("debug", "info", "warning", "error"),
  }, { requiredKeys: edits ? [] : ["token"], noNullPrototype: true });
  return edits ? edited(base, token) : base;
}

/**
 * A config with one text key holding something hostile: the token or an
 * environment secret glued to other text, line breaks, terminal escapes.
 * Keys that quote what they were given in their errors are the ones to try.
 */
function misplaced(kind: "client" | "server", token: string): fc.Arbitrary<string> {
  const hostile = fc.tuple(
    fc.constantFrom(token, "${BURROW_SECRET}", ""),
    fc.constantFrom("", "x", "0", ":", "\n", "\n\n", "\r", "\u001b[2J", "\u2028", "\t", token),
    fc.constantFrom(token, "${BURROW_SECRET}", "", "host"),
    fc.constantFrom("", ":80", ":99999", "-1", "x"),
  ).map((parts) => parts.join(""));
  // Numbers on both sides of every bound: ports 0-65535, seconds (0, 86400].
  const number = fc.oneof(
    fc.integer({ min: -3, max: 3 }),
    fc.integer({ min: 65_532, max: 65_539 }),
    fc.double({ min: -1, max: 1, noNaN: true }),
    fc.double({ min: 86_399, max: 86_402, noNaN: true }),
    fc.constantFrom(0.5, 1e21, 2 ** 53),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
  );
  const keys = kind === "client"
    ? [
      "server",
      "group",
      "heartbeat_interval",
      "apps.0.local",
      "apps.0.name",
      "apps.0.description",
      "apps.0.remote_port",
    ]
    : ["bind", "ports", "public_host", "log_level", "heartbeat_timeout", "no_auth"];
  const base = kind === "client" ? clientObject(token, false) : serverObject(token, false);
  return fc.tuple(base, fc.constantFrom(...keys), fc.oneof(number, hostile)).map(
    ([config, key, value]) => {
      const out = structuredClone(config);
      const path = key.split(".");
      let target = out as Record<string, unknown>;
      for (const step of path.slice(0, -1)) {
        const next = target[step];
        if (next === null || typeof next !== "object") break;
        target = next as Record<string, unknown>;
      }
      target[path.at(-1) as string] = value;
      return stringify(out);
    },
  );
}

/** Many aliases of aliases: the YAML "billion laughs". */
const aliasBomb = fc.tuple(fc.integer({ min: 2, max: 9 }), fc.integer({ min: 2, max: 12 })).map(
  ([depth, width]) => {
    const lines = ["a0: &a0 [lol]"];
    for (let i = 1; i <= depth; i++) {
      lines.push(`a${i}: &a${i} [${Array(width).fill(`*a${i - 1}`).join(", ")}]`);
    }
    return lines.join("\n");
  },
);

/**
 * File text for `kind`, and the secrets no error may quote: the value of
 * `${BURROW_SECRET}`, the file's token when it sets one, and the token a
 * person meant when they wrote it plainly but YAML read it as syntax.
 */
function fileText(kind: "client" | "server"): fc.Arbitrary<{ text: string; secrets: string[] }> {
  return secret.chain((token) =>
    fc.oneof(
      fc.oneof(
        yamlish(token),
        (kind === "client" ? clientObject(token) : serverObject(token)).map((o) => stringify(o)),
        // A valid object's YAML with random lines spliced in, so most of it still parses.
        fc.tuple(
          (kind === "client" ? clientObject(token) : serverObject(token)).map((o) => stringify(o)),
          yamlish(token),
          fc.nat(),
        ).map(([good, bad, at]) => {
          const lines = good.split("\n");
          lines.splice(at % (lines.length + 1), 0, ...bad.split("\n"));
          return lines.join("\n");
        }),
        fc.jsonValue().map((v) => stringify(v)),
        misplaced(kind, token),
        misplaced(kind, token),
        aliasBomb,
      ).map((text) => ({ text, secrets: [...tokenOf(text), ENV_SECRET] })),
      // The token written plainly, as people do: `*`, `&`, `!` or a quote in front makes
      // it YAML syntax, and whatever the loader says then must not quote what was meant.
      fc.tuple(yamlish("Zq7notTheToken"), fc.boolean()).map(([rest, first]) => ({
        text: first ? `token: ${token}\n${rest}` : `${rest}\ntoken: ${token}`,
        secrets: [token.slice(token.indexOf("Zq7")), ENV_SECRET],
      })),
    )
  );
}

// ---- the contract ----------------------------------------------------------------

/** The file's token, when it sets one: only then is that text a secret to the loader. */
function tokenOf(text: string): string[] {
  try {
    const token = (parse(text) as { token?: unknown } | null)?.token;
    // `${BURROW_SECRET}` is replaced by ENV_SECRET, which is always checked.
    return typeof token === "string" && token.length > 0 && !token.includes("${") ? [token] : [];
  } catch {
    return [];
  }
}

const NO_TOKEN =
  /^no token: pass --token, set BURROW_TOKEN or the token key, give --users FILE, or pass --no-auth/;

/** A one-line ConfigError that names the file and quotes no secret. */
function checkError(err: unknown, file: string, secrets: string[]): void {
  assert.ok(
    err instanceof ConfigError,
    `not a ConfigError: ${err instanceof Error ? err.stack : err}`,
  );
  const message = err.message;
  assert.ok(!/[\r\n\u2028\u2029]/.test(message), `not one line: ${JSON.stringify(message)}`);
  assert.ok(
    message.startsWith(`${file}: `) || NO_TOKEN.test(message),
    `does not name the file: ${message}`,
  );
  for (const s of secrets) {
    assert.ok(!message.includes(s), `quotes the secret ${JSON.stringify(s)}: ${message}`);
  }
}

function checkClient(config: ClientConfig): void {
  assert.match(config.group, NAME_PATTERN);
  assert.ok(config.token instanceof Secret && config.token.reveal().length > 0);
  assert.equal(`${config.token}`, "***");
  assert.ok(config.heartbeatInterval > 0 && config.heartbeatInterval <= 86_400);
  assert.ok(config.apps.length >= 1 && config.apps.length <= MAX_APPS_PER_GROUP);
  assert.equal(new Set(config.apps.map((a) => a.name)).size, config.apps.length);
  for (const app of config.apps) {
    assert.match(app.name, NAME_PATTERN);
    assert.ok(Number.isInteger(app.remotePort) && app.remotePort >= 0 && app.remotePort <= 65535);
    assert.ok(Number.isInteger(app.local.port) && app.local.port <= 65535);
    assert.ok(app.description === undefined || app.description.length <= 1024);
  }
  for (const s of config.server) assert.ok(Number.isInteger(s.port) && s.port <= 65535);
}

function checkServer(config: ServerConfig): void {
  assert.ok(config.noAuth || config.token instanceof Secret);
  assert.ok(config.heartbeatTimeout > 0 && config.heartbeatTimeout <= 86_400);
  assert.ok(config.ports.length > 0);
  for (const r of config.ports) assert.ok(1 <= r.from && r.from <= r.to && r.to <= 65535);
  assert.ok(Number.isInteger(config.bind.port) && config.bind.port <= 65535);
  assert.ok(config.publicHost.length > 0);
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await makeTempDir({ prefix: "burrow_config_fuzz_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The yaml package warns on stderr (process.emitWarning) about some keys it
 * must stringify; silence that for the run, it is not what is under test.
 */
async function quietly(fn: () => Promise<void>): Promise<void> {
  const proc = (globalThis as { process?: { emitWarning: unknown } }).process;
  const saved = proc?.emitWarning;
  if (proc) proc.emitWarning = () => {};
  try {
    await fn();
  } finally {
    if (proc) proc.emitWarning = saved;
  }
}

for (const kind of ["client", "server"] as const) {
  Deno.test(`fuzz: a ${kind} config file loads within bounds or fails with a one-line ConfigError`, async () => {
    const before = prototypeSnapshot();
    let loaded = 0;
    await withTempDir((dir) =>
      quietly(async () => {
        const file = `${dir}/${kind}.yaml`;
        await fc.assert(
          fc.asyncProperty(fileText(kind), async ({ text, secrets }) => {
            await Deno.writeTextFile(file, text);
            let config: ClientConfig | ServerConfig;
            try {
              config = kind === "client"
                ? await loadClientConfig(file, {}, getEnv)
                : await loadServerConfig({ config: file }, getEnv);
            } catch (err) {
              return checkError(err, file, secrets);
            }
            if (kind === "client") checkClient(config as ClientConfig);
            else checkServer(config as ServerConfig);
            loaded++;
          }),
          fuzz(700),
        );
      })
    );
    assertPrototypeClean(before);
    // The generators must reach the success path too, or half the contract goes untested.
    assert.ok(loaded > 0, "no generated file ever loaded");
  });
}

/** Bounded keys: a value near the bound, and whether the loader must take it. */
const BOUNDED: Record<"client" | "server", Record<string, fc.Arbitrary<[unknown, boolean]>>> =
  (() => {
    const nearPort = fc.oneof(
      fc.integer({ min: -3, max: 3 }),
      fc.integer({ min: 65_530, max: 65_540 }),
      fc.integer({ min: -1e6, max: 1e6 }),
    );
    const nearSeconds = fc.oneof(
      fc.double({ min: -1, max: 1, noNaN: true }),
      fc.double({ min: 86_399, max: 86_401, noNaN: true }),
      fc.constantFrom(0, 86_400, 86_400.000001, 5e-324),
    );
    const seconds = nearSeconds.map((v): [unknown, boolean] => [v, v > 0 && v <= 86_400]);
    return {
      client: {
        "apps.0.remote_port": nearPort.map((v) => [v, v >= 0 && v <= 65_535]),
        "apps.0.local": nearPort.map((v) => [`127.0.0.1:${v}`, v >= 0 && v <= 65_535]),
        server: nearPort.map((v) => [`relay.example.net:${v}`, v >= 0 && v <= 65_535]),
        heartbeat_interval: seconds,
      },
      server: {
        heartbeat_timeout: seconds,
        bind: nearPort.map((v) => [`0.0.0.0:${v}`, v >= 0 && v <= 65_535]),
        ports: nearPort.map((v) => [v, v >= 1 && v <= 65_535]),
      },
    };
  })();

for (const kind of ["client", "server"] as const) {
  Deno.test(`fuzz: ${kind} config keys with bounds take exactly the values within them`, async () => {
    const cases = fc.constantFrom(...Object.keys(BOUNDED[kind])).chain((key) =>
      fc.tuple(
        fc.constant(key),
        BOUNDED[kind][key] as fc.Arbitrary<[unknown, boolean]>,
        kind === "client" ? clientObject("Zq7token", false) : serverObject("Zq7token", false),
      )
    );
    await withTempDir(async (dir) => {
      const file = `${dir}/${kind}.yaml`;
      await fc.assert(
        fc.asyncProperty(cases, async ([key, [value, ok], base]) => {
          const config = structuredClone(base);
          const path = key.split(".");
          let target = config as Record<string, unknown>;
          for (const step of path.slice(0, -1)) target = target[step] as Record<string, unknown>;
          target[path.at(-1) as string] = value;
          // No edits: the base is complete and valid (apart from duplicate app names).
          if (kind === "client") {
            const apps = config.apps as Array<{ name: string }>;
            apps.forEach((app, i) => (app.name = `app-${i}`));
          }
          await Deno.writeTextFile(file, stringify(config));
          const load = () =>
            kind === "client"
              ? loadClientConfig(file, {}, getEnv)
              : loadServerConfig({ config: file }, getEnv);
          if (ok) await load();
          else {
            await assert.rejects(load, (err) => {
              checkError(err, file, ["Zq7token", ENV_SECRET]);
              const shown = key.replace(/\.0\./, "[0].");
              assert.ok(
                (err as Error).message.includes(`: ${shown} (line`),
                (err as Error).message,
              );
              return true;
            }, `${key}: ${JSON.stringify(value)} was taken`);
          }
        }),
        fuzz(300),
      );
    });
  });
}
