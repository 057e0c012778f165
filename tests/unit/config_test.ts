/**
 * Config loading: every fixture under `tests/fixtures/{client,server}/{valid,invalid}`
 * is loaded. Each invalid fixture opens with `# expect: <substring>`, a part
 * of the one-line error it must give; each valid fixture has its expected
 * result in the tables below (a fixture without one fails the test). Also
 * covers flags over file keys, the `BURROW_TOKEN` fallback, `lib/util/addr.ts`
 * and the masking and proofs of `lib/util/secret.ts`.
 */

import assert from "node:assert/strict";
import { formatHostPort, parseHostPort, parsePortSpec } from "../../lib/util/addr.ts";
import {
  type ClientConfig,
  type ClientFlags,
  loadClientConfig,
} from "../../lib/config/group_file.ts";
import { parseYaml } from "../../lib/config/file.ts";
import { ConfigError } from "../../lib/util/errors.ts";
import { maskSecrets, newId, newNonce, prove, Secret, verifyProof } from "../../lib/util/secret.ts";
import {
  loadServerConfig,
  type ServerConfig,
  type ServerFlags,
} from "../../lib/config/server_file.ts";

const FIXTURES = new URL("../fixtures/", import.meta.url);

function fixtureDir(kind: "client" | "server", validity: "valid" | "invalid"): string {
  return decodeURIComponent(new URL(`${kind}/${validity}/`, FIXTURES).pathname);
}

async function yamlFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(".yaml")) names.push(entry.name);
  }
  return names.sort();
}

/** The `# expect:` substring of an invalid fixture. */
async function expectation(file: string): Promise<string> {
  const first = (await Deno.readTextFile(file)).split("\n")[0] ?? "";
  const m = /^# expect: (.+)$/.exec(first);
  assert.ok(m, `${file} must begin with "# expect: <substring>"`);
  return (m[1] as string).trimEnd();
}

/** Secret values used by the fixtures and the environment; none may appear in an error. */
const SECRETS = [
  "fixture-secret-token",
  "env-secret-value-8d1f",
  "fixture-server-token",
  "fixture-dashboard-pass",
];

/** The environment the fixtures expect, set for the duration of `fn`. */
async function withFixtureEnv(fn: () => Promise<void>): Promise<void> {
  const vars: Record<string, string | undefined> = {
    BURROW_FIXTURE_TOKEN: "env-secret-value-8d1f",
    BURROW_FIXTURE_HOST: "relay.example.net",
    BURROW_FIXTURE_APP: "seven",
    BURROW_FIXTURE_PORT: "7007",
    BURROW_FIXTURE_UNSET: undefined,
  };
  const saved = new Map<string, string | undefined>();
  for (const [name, value] of Object.entries(vars)) {
    saved.set(name, Deno.env.get(name));
    if (value === undefined) Deno.env.delete(name);
    else Deno.env.set(name, value);
  }
  try {
    await fn();
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
}

const processEnv = (name: string) => Deno.env.get(name);

/** Asserts that `run` throws a one-line ConfigError naming the file with `expected` in it. */
async function assertConfigError(
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

// ---- client ----------------------------------------------------------------

/** The parts of a ClientConfig worth comparing, with the token revealed. */
function plainClient(c: ClientConfig) {
  return {
    server: c.server,
    token: c.token.reveal(),
    group: c.group,
    heartbeatInterval: c.heartbeatInterval,
    logLevel: c.logLevel,
    apps: c.apps,
    tls: c.tls,
    stateDir: c.stateDir,
  };
}

/** TLS as a group file without TLS keys leaves it: on, trust on first use, default state folder. */
const CLIENT_TLS_DEFAULT = { tls: {}, stateDir: undefined };

const clientValid: Record<string, { flags?: ClientFlags; want: ReturnType<typeof plainClient> }> = {
  "minimal.yaml": {
    want: {
      ...CLIENT_TLS_DEFAULT,
      server: { hostname: "127.0.0.1", port: 7700 },
      token: "fixture-token-minimal",
      group: "home-lab",
      heartbeatInterval: 10,
      logLevel: "info",
      apps: [{ name: "ssh", local: { hostname: "127.0.0.1", port: 22 }, remotePort: 0 }],
    },
  },
  "full.yaml": {
    want: {
      ...CLIENT_TLS_DEFAULT,
      server: { hostname: "tunnel.example.com", port: 7701 },
      token: "env-secret-value-8d1f",
      group: "lab-2",
      heartbeatInterval: 2.5,
      logLevel: "info",
      apps: [
        { name: "ssh", local: { hostname: "127.0.0.1", port: 22 }, remotePort: 6022 },
        { name: "web", local: { hostname: "::1", port: 8080 }, remotePort: 0 },
        { name: "db-5432", local: { hostname: "db.internal", port: 5432 }, remotePort: 0 },
      ],
    },
  },
  "token_from_flag.yaml": {
    flags: { server: "[2001:db8::1]:7700", token: "from-the-flag", "log-level": "warning" },
    want: {
      ...CLIENT_TLS_DEFAULT,
      server: { hostname: "2001:db8::1", port: 7700 },
      token: "from-the-flag",
      group: "flagged",
      heartbeatInterval: 10,
      logLevel: "warning",
      apps: [{ name: "echo", local: { hostname: "localhost", port: 9000 }, remotePort: 65535 }],
    },
  },
  "admin.yaml": {
    want: {
      ...CLIENT_TLS_DEFAULT,
      server: { hostname: "127.0.0.1", port: 7700 },
      token: "fixture-token-admin",
      group: "admin-lab",
      heartbeatInterval: 10,
      logLevel: "info",
      apps: [{ name: "ssh", local: { hostname: "127.0.0.1", port: 22 }, remotePort: 0 }],
    },
  },
  "proxy.yaml": {
    want: {
      ...CLIENT_TLS_DEFAULT,
      server: { hostname: "tunnel.example.com", port: 7700 },
      token: "fixture-secret-token",
      group: "office",
      heartbeatInterval: 10,
      logLevel: "info",
      apps: [
        {
          name: "web",
          local: { hostname: "127.0.0.1", port: 8080 },
          remotePort: 0,
          proxyProtocol: "v1",
        },
        {
          name: "smtp",
          local: { hostname: "127.0.0.1", port: 25 },
          remotePort: 0,
          proxyProtocol: "v2",
        },
        { name: "ssh", local: { hostname: "127.0.0.1", port: 22 }, remotePort: 0 },
      ],
    },
  },
  "env_inside_values.yaml": {
    want: {
      ...CLIENT_TLS_DEFAULT,
      server: { hostname: "relay.example.net", port: 7700 },
      token: "prefix-env-secret-value-8d1f",
      group: "envy",
      heartbeatInterval: 10,
      logLevel: "info",
      apps: [{ name: "app-seven", local: { hostname: "127.0.0.1", port: 7007 }, remotePort: 0 }],
    },
  },
  "tls_pinned.yaml": {
    want: {
      server: { hostname: "127.0.0.1", port: 7700 },
      token: "fixture-token-pinned",
      group: "pinned",
      heartbeatInterval: 10,
      logLevel: "info",
      apps: [{ name: "ssh", local: { hostname: "127.0.0.1", port: 22 }, remotePort: 0 }],
      // kept as written; lib/client/client.ts reduces it to 64 lowercase hex digits
      tls: {
        fingerprint:
          "SHA256:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
      },
      stateDir: `${fixtureDir("client", "valid")}state`,
    },
  },
  "tls_ca.yaml": {
    want: {
      server: { hostname: "127.0.0.1", port: 7700 },
      token: "fixture-token-ca",
      group: "with-ca",
      heartbeatInterval: 10,
      logLevel: "info",
      apps: [{ name: "ssh", local: { hostname: "127.0.0.1", port: 22 }, remotePort: 0 }],
      tls: { ca: `${fixtureDir("client", "valid")}certs/ca.pem` },
      stateDir: undefined,
    },
  },
  "tls_off.yaml": {
    want: {
      server: { hostname: "127.0.0.1", port: 7700 },
      token: "fixture-token-plain",
      group: "plain",
      heartbeatInterval: 10,
      logLevel: "info",
      apps: [{ name: "ssh", local: { hostname: "127.0.0.1", port: 22 }, remotePort: 0 }],
      tls: false,
      stateDir: undefined,
    },
  },
};

Deno.test("every valid client fixture loads to the expected config", async () => {
  const dir = fixtureDir("client", "valid");
  const files = await yamlFiles(dir);
  assert.deepEqual(files, Object.keys(clientValid).sort(), "each fixture has an expectation");
  await withFixtureEnv(async () => {
    for (const name of files) {
      const file = dir + name;
      const { flags = {}, want } = clientValid[name]!;
      const config = await loadClientConfig(file, flags, processEnv);
      assert.equal(config.file, file);
      assert.deepEqual(plainClient(config), want, name);
      assert.ok(config.token instanceof Secret);
    }
  });
});

Deno.test("every invalid client fixture fails with its expected one-line error", async () => {
  const dir = fixtureDir("client", "invalid");
  const files = await yamlFiles(dir);
  assert.ok(files.length >= 25, `only ${files.length} invalid client fixtures`);
  await withFixtureEnv(async () => {
    for (const name of files) {
      const file = dir + name;
      await assertConfigError(
        () => loadClientConfig(file, {}, processEnv),
        file,
        await expectation(file),
      );
    }
  });
});

Deno.test("client flags override the file's server and token", async () => {
  const file = fixtureDir("client", "valid") + "minimal.yaml";
  const config = await loadClientConfig(file, {
    server: "10.1.2.3:9999",
    token: "flag-token",
    "log-level": "error",
  }, processEnv);
  assert.deepEqual(config.server, { hostname: "10.1.2.3", port: 9999 });
  assert.equal(config.token.reveal(), "flag-token");
  assert.equal(config.logLevel, "error");
  assert.equal(config.group, "home-lab", "keys without a flag keep the file's value");
});

Deno.test("a flag supplies a missing server or token, but not both missing", async () => {
  await withFixtureEnv(async () => {
    const invalid = fixtureDir("client", "invalid");
    const noServer = await loadClientConfig(invalid + "missing_server.yaml", {
      server: "127.0.0.1:1",
    }, processEnv);
    assert.deepEqual(noServer.server, { hostname: "127.0.0.1", port: 1 });
    assert.equal(noServer.token.reveal(), "fixture-secret-token");
    const noToken = await loadClientConfig(invalid + "missing_token.yaml", {
      token: "t",
    }, processEnv);
    assert.equal(noToken.token.reveal(), "t");
  });
});

Deno.test("the proxy: --proxy over the file's proxy over BURROW_PROXY, each checked", async () => {
  const valid = fixtureDir("client", "valid");
  const env = (proxy: string | undefined) => (name: string) =>
    name === "BURROW_PROXY" ? proxy : processEnv(name);
  const proxyOf = async (file: string, flags: ClientFlags, proxyEnv?: string) =>
    (await loadClientConfig(valid + file, flags, env(proxyEnv))).proxy?.reveal();
  await withFixtureEnv(async () => {
    const fromFile = "http://alice:env-secret-value-8d1f@proxy.corp.example:3128";
    assert.equal(await proxyOf("proxy.yaml", {}, "socks5://127.0.0.1:1080"), fromFile);
    assert.equal(
      await proxyOf("proxy.yaml", { proxy: "socks5://[::1]:1080" }, "http://h:1"),
      "socks5://[::1]:1080",
    );
    assert.equal(
      await proxyOf("minimal.yaml", {}, "socks5://u:p@127.0.0.1:1080"),
      "socks5://u:p@127.0.0.1:1080",
    );
    assert.equal(await proxyOf("minimal.yaml", {}, ""), undefined);
    assert.equal(await proxyOf("minimal.yaml", {}), undefined);
    const denied = (name: string): string | undefined => {
      if (name === "BURROW_PROXY") throw new Deno.errors.NotCapable("no env access");
      return undefined;
    };
    const noEnv = await loadClientConfig(valid + "minimal.yaml", {}, denied);
    assert.equal(noEnv.proxy, undefined, "a variable that cannot be read was not meant");
    const printed = JSON.stringify(await loadClientConfig(valid + "proxy.yaml", {}, processEnv));
    assert.ok(!printed.includes("env-secret-value-8d1f"), printed);
  });
  await assertConfigError(
    () =>
      loadClientConfig(
        valid + "minimal.yaml",
        { proxy: "ftp://fixture-secret-token@h:1" },
        processEnv,
      ),
    undefined,
    `--proxy: proxy scheme "ftp" is not supported in "ftp://***@h:1"`,
  );
  await assertConfigError(
    () => loadClientConfig(valid + "minimal.yaml", {}, env("http://u:env-secret-value-8d1f@h")),
    undefined,
    `BURROW_PROXY: "http://***@h" has no port: add :PORT`,
  );
});

Deno.test("bad client flags are one-line errors naming the flag", async () => {
  const file = fixtureDir("client", "valid") + "minimal.yaml";
  await assertConfigError(
    () => loadClientConfig(file, { server: "nowhere" }, processEnv),
    undefined,
    `--server: expected HOST:PORT, got "nowhere"`,
  );
  await assertConfigError(
    () => loadClientConfig(file, { token: "" }, processEnv),
    undefined,
    "--token: must not be empty",
  );
  await assertConfigError(
    () => loadClientConfig(file, { "log-level": "loud" }, processEnv),
    undefined,
    `--log-level: must be one of debug, info, warning, error, got "loud"`,
  );
});

Deno.test("a missing group file is a ConfigError naming it", async () => {
  const file = fixtureDir("client", "valid") + "does-not-exist.yaml";
  await assertConfigError(() => loadClientConfig(file, {}, processEnv), file, "no such file");
});

Deno.test("an environment variable that cannot be read names the variable, not a value", async () => {
  const file = fixtureDir("client", "valid") + "full.yaml";
  const denied = (name: string): string => {
    throw new Deno.errors.NotCapable(`Requires env access to "${name}"`);
  };
  await assertConfigError(
    () => loadClientConfig(file, {}, denied),
    file,
    "token (line 3): environment variable BURROW_FIXTURE_TOKEN cannot be read",
  );
});

Deno.test("a YAML syntax error quotes nothing from the file and stays on one line", () => {
  // Found by the long fuzz runs: yaml quotes the offending text, which may be
  // a token that YAML read as syntax (`!ab!cd` is a tag) and may hold U+2028,
  // a line terminator that its JSON escapes leave as it is.
  const cases: Array<[string, string]> = [
    [
      "lab\n#\n\u2028\ntoken: x",
      "g.yaml: line 3: YAML syntax error: unexpected text here",
    ],
    [
      "server: 127.0.0.1:7700\ntoken: !s3cret!tail\n",
      "g.yaml: line 2: YAML syntax error: unknown tag (quote a value that starts with !)",
    ],
    [
      "token: !s3cret!\n",
      "g.yaml: line 1: YAML syntax error: unknown tag (quote a value that starts with !)",
    ],
    [
      'token: "s3cret\\q"\n',
      "g.yaml: line 1: YAML syntax error: invalid escape sequence in a double-quoted value",
    ],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseYaml("g.yaml", text), (err) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.message, message);
      return true;
    });
  }
});

Deno.test("a loaded client config never prints its token", async () => {
  await withFixtureEnv(async () => {
    const config = await loadClientConfig(
      fixtureDir("client", "valid") + "full.yaml",
      {},
      processEnv,
    );
    for (const printed of [Deno.inspect(config, { depth: 10 }), JSON.stringify(config)]) {
      assert.ok(!printed.includes("env-secret-value-8d1f"), printed);
      assert.ok(printed.includes("***"));
    }
  });
});

// ---- server ----------------------------------------------------------------

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

// ---- addr ------------------------------------------------------------------

Deno.test("parseHostPort accepts host:port and [v6]:port", () => {
  assert.deepEqual(parseHostPort("127.0.0.1:7700"), { hostname: "127.0.0.1", port: 7700 });
  assert.deepEqual(parseHostPort("example.com:0"), { hostname: "example.com", port: 0 });
  assert.deepEqual(parseHostPort("[::1]:8080"), { hostname: "::1", port: 8080 });
  assert.deepEqual(parseHostPort("[fe80::1%eth0]:22"), { hostname: "fe80::1%eth0", port: 22 });
  assert.deepEqual(parseHostPort("  host:65535 "), { hostname: "host", port: 65535 });
  assert.deepEqual(parseHostPort("h:00022"), { hostname: "h", port: 22 });
});

Deno.test("parseHostPort explains what is wrong", () => {
  for (
    const bad of ["127.0.0.1", ":80", "host:", "host:http", "::1:80", "a b:1", "host:123456", ""]
  ) {
    assert.equal(parseHostPort(bad), `expected HOST:PORT, got "${bad}"`);
  }
  assert.equal(parseHostPort("host:65536"), `port 65536 is out of range (0-65535) in "host:65536"`);
  assert.equal(parseHostPort("[::]:99999"), `port 99999 is out of range (0-65535) in "[::]:99999"`);
});

Deno.test("formatHostPort brackets IPv6 and round-trips", () => {
  for (const text of ["127.0.0.1:7700", "[::1]:8080", "example.com:1"]) {
    const parsed = parseHostPort(text);
    assert.ok(typeof parsed !== "string");
    assert.equal(formatHostPort(parsed), text);
  }
});

Deno.test("parsePortSpec reads ports and ranges", () => {
  assert.deepEqual(parsePortSpec("6000-6100,7022"), [
    { from: 6000, to: 6100 },
    { from: 7022, to: 7022 },
  ]);
  assert.deepEqual(parsePortSpec(" 1 , 2-3,65535 "), [
    { from: 1, to: 1 },
    { from: 2, to: 3 },
    { from: 65535, to: 65535 },
  ]);
  assert.deepEqual(parsePortSpec("80-80"), [{ from: 80, to: 80 }]);
});

Deno.test("parsePortSpec explains what is wrong", () => {
  for (const bad of ["", "1,,2", "1-", "-5", "a-b", "1-2-3", "6000 6001", "123456"]) {
    assert.equal(parsePortSpec(bad), `expected ports like "6000-6100,7022", got "${bad}"`);
  }
  assert.equal(parsePortSpec("0"), `port "0" is outside 1-65535`);
  assert.equal(parsePortSpec("10,0-5"), `port "0-5" is outside 1-65535`);
  assert.equal(parsePortSpec("60000-65536"), `port "60000-65536" is outside 1-65535`);
  assert.equal(parsePortSpec("9-8"), `range "9-8" runs backwards`);
});

// ---- secret ----------------------------------------------------------------

Deno.test("a Secret prints masked however it is printed", () => {
  const s = new Secret("hunter2-value");
  assert.equal(String(s), "***");
  assert.equal(`${s}`, "***");
  assert.equal(JSON.stringify(s), '"***"');
  assert.equal(JSON.stringify({ token: s }), '{"token":"***"}');
  assert.equal(Deno.inspect(s), "Secret(***)");
  assert.equal(Deno.inspect({ token: s }), "{ token: Secret(***) }");
  assert.ok(!Deno.inspect([s], { depth: 10, showHidden: true }).includes("hunter2"));
  assert.equal(s.reveal(), "hunter2-value");
});

Deno.test("prove is HMAC-SHA256 of the NUL-joined parts", async () => {
  // RFC 4231-style known answer: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
  assert.equal(
    await prove(new Secret("key"), "The quick brown fox jumps over the lazy dog"),
    "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
  );
  const s = new Secret("s3cret");
  assert.equal(await prove(s, "a", "b"), await prove(s, "a\0b"));
  assert.notEqual(await prove(s, "ab", "c"), await prove(s, "a", "bc"));
  assert.match(await prove(s, "x"), /^[0-9a-f]{64}$/);
});

Deno.test("verifyProof accepts a good proof and rejects tampered ones", async () => {
  const s = new Secret("s3cret");
  const nonce = newNonce();
  const proof = await prove(s, nonce, "control", "lab");
  assert.equal(await verifyProof(s, proof, nonce, "control", "lab"), true);
  // One hex digit changed.
  const last = proof.at(-1) === "0" ? "1" : "0";
  assert.equal(await verifyProof(s, proof.slice(0, -1) + last, nonce, "control", "lab"), false);
  const first = proof[0] === "f" ? "e" : "f";
  assert.equal(await verifyProof(s, first + proof.slice(1), nonce, "control", "lab"), false);
  // Other parts, another secret, malformed proofs.
  assert.equal(await verifyProof(s, proof, nonce, "work", "lab"), false);
  assert.equal(await verifyProof(s, proof, nonce, "control", "lab2"), false);
  assert.equal(await verifyProof(s, proof, newNonce(), "control", "lab"), false);
  assert.equal(await verifyProof(new Secret("s3cret!"), proof, nonce, "control", "lab"), false);
  assert.equal(await verifyProof(s, proof.toUpperCase(), nonce, "control", "lab"), false);
  assert.equal(await verifyProof(s, proof.slice(0, 62), nonce, "control", "lab"), false);
  assert.equal(await verifyProof(s, proof + "00", nonce, "control", "lab"), false);
  assert.equal(await verifyProof(s, "", nonce, "control", "lab"), false);
  assert.equal(await verifyProof(s, "zz" + proof.slice(2), nonce, "control", "lab"), false);
});

Deno.test("newNonce and newId are fresh lowercase hex", () => {
  const nonces = new Set(Array.from({ length: 20 }, () => newNonce()));
  const ids = new Set(Array.from({ length: 20 }, () => newId()));
  assert.equal(nonces.size, 20);
  assert.equal(ids.size, 20);
  for (const n of nonces) assert.match(n, /^[0-9a-f]{64}$/);
  for (const id of ids) assert.match(id, /^[0-9a-f]{32}$/);
});

Deno.test("maskSecrets masks long values anywhere, short ones only as whole words", () => {
  const masks: Array<[string, string]> = [["s3cret-tok", "(the token)"], ["t", "(t)"]];
  assert.equal(
    maskSecrets('got "hosts3cret-toks3cret-tok:80" for t', masks),
    'got "host(the token)(the token):80" for (t)',
  );
  // Longest first: a value that contains another is masked whole; `$&` is no pattern.
  assert.equal(
    maskSecrets("abcdefgh abcdef", [["abcdef", "$&"], ["abcdefgh", "(long)"]]),
    "(long) $&",
  );
});
