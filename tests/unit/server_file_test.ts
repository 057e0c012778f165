/**
 * The server file and flags (`lib/config/server_file.ts`): every fixture
 * under `tests/fixtures/server/{valid,invalid}` loads as its table entry says
 * or fails with its `# expect:` line; flags override file keys, and the token
 * comes from the flag, the file or `BURROW_TOKEN`.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertConfigError,
  expectation,
  fixtureDir,
  processEnv,
  withFixtureEnv,
  yamlFiles,
} from "../helpers/config_fixtures.ts";
import { Secret } from "../../lib/util/secret.ts";
import {
  loadServerConfig,
  type ServerConfig,
  type ServerFlags,
} from "../../lib/config/server_file.ts";

/** The parts of a ServerConfig worth comparing, with the token revealed. */
function plainServer(c: ServerConfig) {
  return {
    bind: c.bind,
    token: c.token?.reveal(),
    noAuth: c.noAuth,
    ports: c.ports,
    publicHost: c.publicHost,
    heartbeatTimeout: c.heartbeatTimeout,
    logLevel: c.logLevel,
    ...(c.dashboard
      ? {
        dashboard: {
          bind: c.dashboard.bind,
          user: c.dashboard.user,
          password: c.dashboard.password?.reveal(),
        },
      }
      : {}),
    tls: c.tls,
    stateDir: c.stateDir,
  };
}

const DEFAULT_SERVER: Omit<ReturnType<typeof plainServer>, "token"> = {
  bind: { hostname: "0.0.0.0", port: 7700 },
  noAuth: false,
  ports: [{ from: 10000, to: 20000 }],
  publicHost: "0.0.0.0",
  heartbeatTimeout: 30,
  logLevel: "info",
  tls: true,
  stateDir: undefined,
};

const serverValid: Record<
  string,
  { flags?: ServerFlags; env?: Record<string, string>; want: ReturnType<typeof plainServer> }
> = {
  "defaults.yaml": { want: { ...DEFAULT_SERVER, token: "fixture-server-token" } },
  "full.yaml": {
    want: {
      bind: { hostname: "127.0.0.1", port: 7800 },
      token: "env-secret-value-8d1f",
      noAuth: false,
      ports: [{ from: 6000, to: 6100 }, { from: 7022, to: 7022 }, { from: 8000, to: 8001 }],
      publicHost: "192.0.2.10",
      heartbeatTimeout: 45,
      logLevel: "debug",
      tls: true,
      stateDir: undefined,
    },
  },
  "single_port_int.yaml": {
    want: {
      ...DEFAULT_SERVER,
      bind: { hostname: "::", port: 7700 },
      token: "fixture-server-token",
      ports: [{ from: 7022, to: 7022 }],
      heartbeatTimeout: 2.5,
      logLevel: "warning",
    },
  },
  "no_auth.yaml": {
    env: { BURROW_TOKEN: "ignored-when-open" },
    want: {
      ...DEFAULT_SERVER,
      token: undefined,
      noAuth: true,
      ports: [{ from: 20000, to: 20010 }],
    },
  },
  "empty.yaml": {
    env: { BURROW_TOKEN: "from-env" },
    want: { ...DEFAULT_SERVER, token: "from-env" },
  },
  "dashboard.yaml": {
    want: {
      ...DEFAULT_SERVER,
      token: "fixture-server-token",
      dashboard: {
        bind: { hostname: "0.0.0.0", port: 7500 },
        user: "ops",
        password: "env-secret-value-8d1f",
      },
    },
  },
  "dashboard_loopback.yaml": {
    want: {
      ...DEFAULT_SERVER,
      token: "fixture-server-token",
      dashboard: { bind: { hostname: "::1", port: 0 }, user: undefined, password: undefined },
    },
  },
  "own_cert.yaml": {
    want: {
      ...DEFAULT_SERVER,
      token: "fixture-server-token",
      tls: {
        certFile: `${fixtureDir("server", "valid")}certs/chain.pem`,
        keyFile: "/etc/burrow/key.pem",
      },
      stateDir: `${fixtureDir("server", "valid")}state`,
    },
  },
  "no_tls.yaml": { want: { ...DEFAULT_SERVER, token: "fixture-server-token", tls: false } },
};

Deno.test("every valid server fixture loads to the expected config", async () => {
  const dir = fixtureDir("server", "valid");
  const files = await yamlFiles(dir);
  assert.deepEqual(files, Object.keys(serverValid).sort(), "each fixture has an expectation");
  await withFixtureEnv(async () => {
    for (const name of files) {
      const { flags = {}, env = {}, want } = serverValid[name]!;
      const getEnv = (n: string) => env[n] ?? Deno.env.get(n);
      const config = await loadServerConfig({ ...flags, config: dir + name }, getEnv);
      assert.deepEqual(plainServer(config), want, name);
    }
  });
});

Deno.test("every invalid server fixture fails with its expected one-line error", async () => {
  const dir = fixtureDir("server", "invalid");
  const files = await yamlFiles(dir);
  assert.ok(files.length >= 15, `only ${files.length} invalid server fixtures`);
  await withFixtureEnv(async () => {
    for (const name of files) {
      const file = dir + name;
      // A token in the environment, so only the file's own fault can fail it.
      const getEnv = (n: string) => n === "BURROW_TOKEN" ? "fixture-server-token" : Deno.env.get(n);
      await assertConfigError(
        () => loadServerConfig({ config: file }, getEnv),
        file,
        await expectation(file),
      );
    }
  });
});

Deno.test("server defaults with no file and BURROW_TOKEN set", async () => {
  const config = await loadServerConfig({}, (n) => n === "BURROW_TOKEN" ? "env-tok" : undefined);
  assert.deepEqual(plainServer(config), { ...DEFAULT_SERVER, token: "env-tok" });
});

Deno.test("server flags override every file key", async () => {
  await withFixtureEnv(async () => {
    const config = await loadServerConfig({
      config: fixtureDir("server", "valid") + "full.yaml",
      bind: "127.0.0.2:7900",
      token: "flag-token",
      ports: "30000-30005,31000",
      "public-host": "198.51.100.7",
      "heartbeat-timeout": "12",
      "log-level": "error",
      "tls-cert": "chain.pem",
      "tls-key": "key.pem",
      "state-dir": "state",
    }, processEnv);
    assert.deepEqual(plainServer(config), {
      bind: { hostname: "127.0.0.2", port: 7900 },
      token: "flag-token",
      noAuth: false,
      ports: [{ from: 30000, to: 30005 }, { from: 31000, to: 31000 }],
      publicHost: "198.51.100.7",
      heartbeatTimeout: 12,
      logLevel: "error",
      // flags name paths as given, not relative to the file
      tls: { certFile: "chain.pem", keyFile: "key.pem" },
      stateDir: "state",
    });
  });
});

Deno.test("the server token comes from the flag, then the file, then BURROW_TOKEN", async () => {
  const valid = fixtureDir("server", "valid");
  const env = (n: string) => n === "BURROW_TOKEN" ? "env-tok" : undefined;
  const fromFlag = await loadServerConfig({ config: valid + "defaults.yaml", token: "f" }, env);
  assert.equal(fromFlag.token?.reveal(), "f");
  const fromFile = await loadServerConfig({ config: valid + "defaults.yaml" }, env);
  assert.equal(fromFile.token?.reveal(), "fixture-server-token");
  const fromEnv = await loadServerConfig({ config: valid + "empty.yaml" }, env);
  assert.equal(fromEnv.token?.reveal(), "env-tok");
  assert.ok(fromEnv.token instanceof Secret);
});

Deno.test("a server with no token and no --no-auth is a ConfigError", async () => {
  const expected = "no token: pass --token, set BURROW_TOKEN";
  await assertConfigError(() => loadServerConfig({}, () => undefined), undefined, expected);
  // An empty BURROW_TOKEN counts as unset.
  await assertConfigError(() => loadServerConfig({}, () => ""), undefined, expected);
  // So does one the program may not read.
  const denied = (): string => {
    throw new Deno.errors.NotCapable("env access denied");
  };
  await assertConfigError(() => loadServerConfig({}, denied), undefined, expected);
  await assertConfigError(
    () =>
      loadServerConfig({ config: fixtureDir("server", "valid") + "empty.yaml" }, () => undefined),
    undefined,
    expected,
  );
  const open = await loadServerConfig({ "no-auth": true }, () => undefined);
  assert.equal(open.noAuth, true);
  assert.equal(open.token, undefined);
  assert.ok(!("token" in open));
});

Deno.test("--no-auth drops any token", async () => {
  const config = await loadServerConfig({ "no-auth": true, token: "x" }, () => "y");
  assert.equal(config.noAuth, true);
  assert.equal(config.token, undefined);
});

Deno.test("bad server flags are one-line errors naming the flag", async () => {
  const env = () => "tok";
  const cases: Array<[ServerFlags, string]> = [
    [{ bind: "7700" }, `--bind: expected HOST:PORT, got "7700"`],
    [{ ports: "1-2-3" }, `--ports: expected ports like "6000-6100,7022", got "1-2-3"`],
    [{ ports: "200-100" }, `--ports: range "200-100" runs backwards`],
    [{ "heartbeat-timeout": "soon" }, `--heartbeat-timeout: expected a number, got "soon"`],
    [{ "heartbeat-timeout": "" }, `--heartbeat-timeout: expected a number, got ""`],
    [{ "heartbeat-timeout": "-1" }, "--heartbeat-timeout: must be more than 0 seconds"],
    [{ "heartbeat-timeout": "0" }, "--heartbeat-timeout: must be more than 0 seconds"],
    [{ "log-level": "trace" }, "--log-level: must be one of debug, info, warning, error"],
    [{ token: "" }, "--token: must not be empty"],
  ];
  for (const [flags, expected] of cases) {
    await assertConfigError(() => loadServerConfig(flags, env), undefined, expected);
  }
});

Deno.test("a missing server config file is a ConfigError naming it", async () => {
  const file = fixtureDir("server", "valid") + "nope.yaml";
  await assertConfigError(
    () => loadServerConfig({ config: file }, () => "tok"),
    file,
    "no such file",
  );
});

Deno.test("dashboard flags override the file, and the password falls back to the environment", async () => {
  const env = (n: string) =>
    ({ BURROW_TOKEN: "tok", BURROW_DASHBOARD_PASSWORD: "from-env" } as Record<string, string>)[n];
  const config = await loadServerConfig({ dashboard: "0.0.0.0:7501" }, env);
  assert.deepEqual(config.dashboard?.bind, { hostname: "0.0.0.0", port: 7501 });
  assert.equal(config.dashboard?.password?.reveal(), "from-env");
  const flagged = await loadServerConfig({
    dashboard: "127.0.0.1:7502",
    "dashboard-user": "ops",
    "dashboard-password": "from-flag",
  }, env);
  assert.equal(flagged.dashboard?.user, "ops");
  assert.equal(flagged.dashboard?.password?.reveal(), "from-flag");
  assert.equal((await loadServerConfig({}, env)).dashboard, undefined, "off by default");
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ dashboard: "7500" }, /^--dashboard: expected HOST:PORT/],
    [{ dashboard: "127.0.0.1:1", "dashboard-user": "a b" }, /^--dashboard-user: must be/],
    [{ dashboard: "127.0.0.1:1", "dashboard-password": "" }, /^--dashboard-password: must not/],
    [{ "dashboard-password": "x" }, /need --dashboard HOST:PORT/],
  ];
  for (const [flags, re] of bad) {
    await assert.rejects(loadServerConfig(flags, env), (err: Error) => re.test(err.message));
  }
});
