/**
 * The group file (`lib/config/group_file.ts`): every fixture under
 * `tests/fixtures/client/{valid,invalid}` is loaded. Each invalid fixture opens
 * with `# expect: <substring>`, a part of the one-line error it must give;
 * each valid fixture has its expected result in the table below (a fixture
 * without one fails the test). Also flags over file keys, and a token that
 * never prints.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type ClientConfig,
  type ClientFlags,
  loadClientConfig,
} from "../../lib/config/group_file.ts";
import {
  assertConfigError,
  expectation,
  fixtureDir,
  processEnv,
  withFixtureEnv,
  yamlFiles,
} from "../helpers/config_fixtures.ts";
import { Secret } from "../../lib/util/secret.ts";
import { makeTempFileSync } from "../helpers/temp.ts";

/** The parts of a ClientConfig worth comparing, with the token revealed. */
function plainClient(c: ClientConfig) {
  return {
    server: c.server,
    token: c.token.reveal(),
    group: c.group,
    ...(c.shared ? { shared: true } : {}),
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
      server: [{ hostname: "127.0.0.1", port: 7700 }],
      token: "fixture-token-minimal",
      group: "home-lab",
      heartbeatInterval: 10,
      logLevel: "info",
      apps: [{ name: "ssh", local: { hostname: "127.0.0.1", port: 22 }, remotePort: 0 }],
    },
  },
  "server_list.yaml": {
    want: {
      ...CLIENT_TLS_DEFAULT,
      server: [
        { hostname: "a.example.net", port: 7700 },
        { hostname: "2001:db8::7", port: 7700 },
        { hostname: "192.0.2.10", port: 7701 },
      ],
      token: "fixture-token-list",
      group: "home-lab",
      heartbeatInterval: 10,
      logLevel: "info",
      apps: [{ name: "ssh", local: { hostname: "127.0.0.1", port: 22 }, remotePort: 0 }],
    },
  },
  "shared.yaml": {
    want: {
      ...CLIENT_TLS_DEFAULT,
      server: [{ hostname: "127.0.0.1", port: 7700 }],
      token: "fixture-token-shared",
      group: "web-farm",
      shared: true,
      heartbeatInterval: 10,
      logLevel: "info",
      apps: [
        {
          name: "web",
          local: { hostname: "127.0.0.1", port: 8080 },
          remotePort: 8000,
          balance: "least_conn",
          health: { http: "/healthz", interval: 5, fails: 2 },
        },
        {
          name: "api",
          local: { hostname: "127.0.0.1", port: 9090 },
          remotePort: 0,
          health: { tcp: true },
        },
      ],
    },
  },
  "full.yaml": {
    want: {
      ...CLIENT_TLS_DEFAULT,
      server: [{ hostname: "tunnel.example.com", port: 7701 }],
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
      server: [{ hostname: "2001:db8::1", port: 7700 }],
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
      server: [{ hostname: "127.0.0.1", port: 7700 }],
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
      server: [{ hostname: "tunnel.example.com", port: 7700 }],
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
      server: [{ hostname: "relay.example.net", port: 7700 }],
      token: "prefix-env-secret-value-8d1f",
      group: "envy",
      heartbeatInterval: 10,
      logLevel: "info",
      apps: [{ name: "app-seven", local: { hostname: "127.0.0.1", port: 7007 }, remotePort: 0 }],
    },
  },
  "tls_pinned.yaml": {
    want: {
      server: [{ hostname: "127.0.0.1", port: 7700 }],
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
      server: [{ hostname: "127.0.0.1", port: 7700 }],
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
      server: [{ hostname: "127.0.0.1", port: 7700 }],
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
  assert.deepEqual(config.server, [{ hostname: "10.1.2.3", port: 9999 }]);
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
    assert.deepEqual(noServer.server, [{ hostname: "127.0.0.1", port: 1 }]);
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

Deno.test("the group file's admin key loads as HOST:PORT", async () => {
  const file = new URL("../fixtures/client/valid/admin.yaml", import.meta.url).pathname;
  const config = await loadClientConfig(file, {}, () => undefined);
  assert.deepEqual(config.admin, { hostname: "127.0.0.1", port: 7401 });
  const minimal = new URL("../fixtures/client/valid/minimal.yaml", import.meta.url).pathname;
  assert.equal((await loadClientConfig(minimal, {}, () => undefined)).admin, undefined);
});

Deno.test("udp apps: type udp, udp_idle_timeout (default 60), and keys a udp app does not take", async () => {
  const load = (apps: string) => {
    const file = makeTempFileSync({ prefix: "burrow-group-", suffix: ".yaml" });
    Deno.writeTextFileSync(file, `server: 127.0.0.1:7000\ntoken: t\ngroup: g\napps:\n${apps}`);
    return loadClientConfig(file, {}, () => undefined);
  };
  const config = await load(
    "  - { name: dns, type: udp, local: 127.0.0.1:53, remote_port: 5353 }\n" +
      "  - { name: game, type: udp, local: 127.0.0.1:27015, udp_idle_timeout: 0.5 }\n" +
      "  - { name: ssh, local: 127.0.0.1:22 }\n",
  );
  assert.deepEqual(config.apps.map((a) => [a.name, a.remotePort, a.udp]), [
    ["dns", 5353, { idleTimeout: 60 }],
    ["game", 0, { idleTimeout: 0.5 }],
    ["ssh", 0, undefined],
  ]);
  await assert.rejects(
    load("  - { name: ssh, local: 127.0.0.1:22, udp_idle_timeout: 5 }\n"),
    /apps\[0\]\.udp_idle_timeout.*is not a key of a tcp app/,
  );
  await assert.rejects(
    load("  - { name: dns, type: udp, local: 127.0.0.1:53, proxy_protocol: v2 }\n"),
    /apps\[0\]\.proxy_protocol.*is not a key of a udp app/,
  );
  await assert.rejects(
    load("  - { name: dns, type: udp, local: 127.0.0.1:53, udp_idle_timeout: 0 }\n"),
    /apps\[0\]\.udp_idle_timeout.*must be more than 0 seconds/,
  );
});
