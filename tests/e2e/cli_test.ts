/**
 * The programs as users and scripts see them: flags, exit codes, output
 * lines, refusals, configuration errors, version mismatches and hostile
 * first frames, and no secret in any output.
 */

import assert from "node:assert/strict";
import {
  dialControl,
  echoThrough,
  groupFile,
  portBlock,
  randomBytes,
  readAll,
  runToEnd,
  sha256,
  startClient,
  startServer,
  startTunnel,
  writeAll,
} from "../helpers/harness.ts";
import {
  encodeFrame,
  FrameReader,
  FrameWriter,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
} from "../../lib/protocol/protocol.ts";
import { makeTempDir } from "../helpers/temp.ts";

const TOKEN = "cli-token-Zq81x";

Deno.test("--help and --version exit 0 on stdout; bad usage exits 2 with one line", async () => {
  for (const script of ["server.ts", "client.ts"]) {
    const help = await runToEnd(script, ["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^burrow-(server|client) \d+\.\d+\.\d+: /);
    assert.match(help.stdout, /Usage: burrow-/);
    const version = await runToEnd(script, ["--version"]);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^burrow-(server|client) 0\.1\.0$/);
    const unknown = await runToEnd(script, ["--bogus"]);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stderr.trim().split("\n").length, 1);
    assert.match(unknown.stderr, /unknown flag --bogus/);
  }
  const missing = await runToEnd("client.ts", []);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr.trim(), /^burrow-client: missing argument GROUP\.yaml$/);
  const noValue = await runToEnd("server.ts", ["--bind"]);
  assert.equal(noValue.code, 2);
  assert.match(noValue.stderr, /flag --bind needs a value/);
});

Deno.test("server: no token exits 2; BURROW_TOKEN works; a taken bind exits 1", async () => {
  const none = await runToEnd("server.ts", ["--bind", "127.0.0.1:0"]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /no token/);
  await using blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const taken = await runToEnd("server.ts", [
    "--bind",
    `127.0.0.1:${blocker.addr.port}`,
    "--token",
    "x",
  ]);
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, /cannot listen on 127\.0\.0\.1:\d+: address in use/);
  const badHost = await runToEnd("server.ts", [
    "--bind",
    "127.0.0.1:0",
    "--token",
    "x",
    "--public-host",
    "192.0.2.1",
  ]);
  assert.equal(badHost.code, 1);
  assert.match(
    badHost.stderr.trim(),
    /^burrow-server: cannot listen on public host 192\.0\.2\.1: /,
  );
  // No --token: the server takes BURROW_TOKEN.
  await using tunnel = await startTunnel({
    group: "envtok",
    token: TOKEN,
    server: { token: undefined, env: { BURROW_TOKEN: TOKEN } },
  });
  const port = await tunnel.port("echo");
  const data = randomBytes(10_000);
  assert.equal(await echoThrough(port, data), await sha256(data));
});

Deno.test("bad config files exit 2 naming the file, key and line", async () => {
  const dir = await makeTempDir({ prefix: "burrow-cli-" });
  const write = (name: string, text: string) => {
    Deno.writeTextFileSync(`${dir}/${name}`, text);
    return `${dir}/${name}`;
  };
  const syntax = write("syntax.yaml", "group: a\napps:\n  - name: x\n   local: [\n");
  let r = await runToEnd("client.ts", [syntax]);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr.trim(),
    new RegExp(`^burrow-client: ${syntax}: line \\d+: YAML syntax error`),
  );
  const badPort = write(
    "port.yaml",
    "server: 127.0.0.1:1\ntoken: t\ngroup: g\napps:\n  - name: a\n    local: 127.0.0.1:1\n    remote_port: 70000\n",
  );
  r = await runToEnd("client.ts", [badPort]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, new RegExp(`${badPort}: apps\\[0\\]\\.remote_port \\(line 7\\): `));
  const unset = write(
    "env.yaml",
    "server: 127.0.0.1:1\ntoken: ${BURROW_TEST_UNSET_VAR}\ngroup: g\napps:\n  - name: a\n    local: 127.0.0.1:1\n",
  );
  r = await runToEnd("client.ts", [unset]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /token \(line 2\): environment variable BURROW_TEST_UNSET_VAR is not set/);
  const noToken = write(
    "notoken.yaml",
    "server: 127.0.0.1:1\ngroup: g\napps:\n  - name: a\n    local: 127.0.0.1:1\n",
  );
  r = await runToEnd("client.ts", [noToken]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /token: is required/);
  const serverBad = write("server.yaml", "token: t\nports: 9000-8000\n");
  r = await runToEnd("server.ts", ["--config", serverBad]);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    new RegExp(`${serverBad}: ports \\(line 2\\): range "9000-8000" runs backwards`),
  );
  const unknownKey = write("unknown.yaml", "token: t\nbind: 127.0.0.1:0\nprots: 1-2\n");
  r = await runToEnd("server.ts", ["--config", unknownKey]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /prots \(line 3\): unknown key/);
  r = await runToEnd("server.ts", ["--token", "t", "--heartbeat-timeout", "soon"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--heartbeat-timeout: expected a number, got "soon"/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("every refusal exits 3 with one line naming the cause", async () => {
  const block = portBlock(2);
  await using tunnel = await startTunnel({
    group: "holder",
    token: TOKEN,
    server: { ports: block.spec },
    apps: [{ name: "a", remote_port: block.from }],
  });
  const addr = `127.0.0.1:${tunnel.server.port}`;
  const expectRefusal = async (file: string, code: string, text: RegExp) => {
    const c = startClient(file);
    assert.equal(await c.exitCode(), 3, c.stderr.text);
    const last = c.stderr.all.filter((l) => l.startsWith("burrow-client:"));
    assert.equal(last.length, 1, c.stderr.text);
    assert.match(
      last[0] as string,
      new RegExp(`refused by the server: .*${text.source}.*\\(${code}\\)$`),
    );
  };
  await tunnel.port("a");
  const one = (o: { token?: string; group?: string; port?: number }) =>
    groupFile({
      server: addr,
      token: o.token ?? TOKEN,
      group: o.group ?? "other",
      apps: [{
        name: "b",
        local: tunnel.app.addr,
        ...(o.port === undefined ? {} : { remote_port: o.port }),
      }],
    });
  await expectRefusal(one({ token: "wrong" }), "auth_failed", /wrong token/);
  await expectRefusal(one({ port: block.from }), "port_taken", /taken by holder\/a/);
  await expectRefusal(
    one({ port: block.to + 10 }),
    "port_not_allowed",
    /outside the server's allowed ports/,
  );
  // A port in range held by another program on the server host.
  using _squatter = Deno.listen({ hostname: "127.0.0.1", port: block.to });
  await expectRefusal(one({ port: block.to }), "port_taken", /in use on the server host/);
  await expectRefusal(one({}), "no_free_port", /no free port/);
  // The holder was never disturbed.
  const data = randomBytes(20_000);
  assert.equal(await echoThrough(block.from, data), await sha256(data));
});

Deno.test("protocol versions: each side names the one to upgrade", async () => {
  await using server = await startServer({ token: TOKEN });
  // A client from the future says hello with version 99.
  const conn = await dialControl(server.port);
  const reader = new FrameReader(conn);
  const challenge = await reader.read(5000) as { type: string; version: number };
  assert.equal(challenge.type, "challenge");
  assert.equal(challenge.version, PROTOCOL_VERSION);
  await writeAll(
    conn,
    encodeFrame({
      type: "work_hello",
      version: 99,
      session: "0".repeat(32),
      proof: "0".repeat(64),
    }),
  );
  const reply = await reader.read(5000) as { type: string; code: string; message: string };
  conn.close();
  assert.equal(reply.code, "version_mismatch");
  assert.match(
    reply.message,
    new RegExp(`client speaks v99, server speaks v${PROTOCOL_VERSION}; upgrade burrow-server`),
  );
  // A server from the future: the client exits 3 saying to upgrade itself.
  const fake = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = await fake.accept();
    await new FrameWriter(conn).send({
      type: "challenge",
      version: PROTOCOL_VERSION + 1,
      server: "9.9.9",
      nonce: "a".repeat(64),
    });
    await readAll(conn).catch(() => {});
    conn.close();
  })();
  const client = startClient(
    groupFile({
      server: `127.0.0.1:${fake.addr.port}`,
      token: TOKEN,
      group: "old",
      apps: [{ name: "a", local: "127.0.0.1:9" }],
    }),
    ["--no-tls"],
  );
  try {
    assert.equal(await client.exitCode(), 3);
    assert.match(
      client.stderr.text,
      new RegExp(
        `client speaks v${PROTOCOL_VERSION}, server speaks v${
          PROTOCOL_VERSION + 1
        }; upgrade burrow-client \\(version_mismatch\\)`,
      ),
    );
  } finally {
    await client.stop();
    await serving;
    fake.close();
  }
});

Deno.test("garbage, oversize and silent first frames close only that connection", async () => {
  await using tunnel = await startTunnel({ group: "steady", token: TOKEN });
  const { server } = tunnel;
  const port = await tunnel.port("echo");
  const hostile = async (payload: Uint8Array | null): Promise<number> => {
    const conn = await dialControl(server.port, { preamble: payload !== null });
    const started = performance.now();
    if (payload) await writeAll(conn, payload).catch(() => {});
    await readAll(conn).catch(() => {}); // the challenge, then EOF when the server hangs up
    conn.close();
    return performance.now() - started;
  };
  const oversize = new Uint8Array(8);
  new DataView(oversize.buffer).setUint32(0, MAX_FRAME_BYTES + 1);
  const garbage = new Uint8Array([0, 0, 0, 5, 0xff, 0xfe, 0x00, 0x01, 0x02]);
  const [tooBig, junk, silent] = await Promise.all([
    hostile(oversize),
    hostile(garbage),
    hostile(null),
  ]);
  assert.ok(tooBig < 2000, `oversize frame closed after ${tooBig} ms`);
  assert.ok(junk < 2000, `garbage closed after ${junk} ms`);
  assert.ok(
    silent >= 4500 && silent < 8000,
    `silent connection closed after ${silent} ms, expected ~5 s`,
  );
  await server.proc.stderr.wait(/exceeds the 65536-byte cap/);
  await server.proc.stderr.wait(/not valid UTF-8 JSON/);
  await server.proc.stderr.wait(/no hello within 5s/);
  const data = randomBytes(300_000);
  assert.equal(await echoThrough(port, data), await sha256(data));
});

Deno.test("no token ever appears in any output, even at debug level", async () => {
  const tunnel = await startTunnel({ group: "secret-keeper", token: TOKEN });
  const { server, client: good } = tunnel;
  const wrongToken = "wrong-token-Hh27";
  const bad = tunnel.addClient("intruder", { token: wrongToken });
  try {
    const port = await tunnel.port("echo");
    assert.equal(await bad.exitCode(), 3);
    const data = randomBytes(1000);
    assert.equal(await echoThrough(port, data), await sha256(data));
  } finally {
    await tunnel.stop(); // every output is complete once the processes are gone
  }
  const everything = [server.proc, good, bad].map((p) => p.stdout.text + p.stderr.text).join("\n");
  assert.ok(everything.includes("authentication failed"), "the refusal was logged");
  assert.ok(!everything.includes(TOKEN), "the server token leaked");
  assert.ok(!everything.includes(wrongToken), "the wrong token leaked");
});

Deno.test("a token pasted in the wrong place is never printed back in an error", async () => {
  const secret = "Pasted-Secret-9k";
  const cases: Array<[string, string[], Record<string, string>]> = [
    ["server.ts", ["--bind", "127.0.0.1:0", "--token", secret, secret], {}],
    ["server.ts", ["--token", secret, "--bind", secret], {}],
    ["server.ts", ["--ports", secret], { BURROW_TOKEN: secret }],
    ["client.ts", ["group.yaml", secret, "--token", secret], {}],
  ];
  const dir = await makeTempDir({ prefix: "burrow-mask-" });
  const file = `${dir}/server.yaml`;
  await Deno.writeTextFile(file, `token: ${secret}\nbind: ${secret}\n`);
  cases.push(["server.ts", ["--config", file], {}]);
  try {
    for (const [script, args, env] of cases) {
      const r = await runToEnd(script, args, env);
      assert.equal(r.code, 2, `${script} ${args.join(" ")}`);
      assert.ok(!r.stderr.includes(secret), `the token leaked: ${r.stderr}`);
      assert.match(r.stderr, /\(the token\)|unexpected/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("discovery: --services and --free-ports print a table or JSON; refusals exit 3", async () => {
  const block = portBlock(10);
  await using tunnel = await startTunnel({
    group: "shown",
    token: TOKEN,
    server: { ports: block.spec },
    apps: [
      { name: "ssh", remote_port: block.from, description: "the home ssh, ask Ana" },
      { name: "web", remote_port: block.from + 1 },
    ],
  });
  await tunnel.port("ssh");
  await tunnel.port("web");
  const data = randomBytes(4321);
  assert.equal(await echoThrough(block.from, data), await sha256(data));
  const server = `127.0.0.1:${tunnel.server.port}`;

  const table = await runToEnd("client.ts", ["--services", "--server", server, "--token", TOKEN]);
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trim().split("\n");
  assert.match(
    lines[0] ?? "",
    /^GROUP\s+APP\s+PORT\s+USERS\s+BYTES IN\s+BYTES OUT\s+SINCE\s+DESCRIPTION$/,
  );
  assert.match(
    lines[1] ?? "",
    new RegExp(
      `^shown\\s+ssh\\s+${block.from}\\s+0\\s+4321\\s+4321\\s+\\S+Z\\s+the home ssh, ask Ana$`,
    ),
  );
  assert.match(
    lines[2] ?? "",
    new RegExp(`^shown\\s+web\\s+${block.from + 1}\\s+0\\s+0\\s+0\\s+\\S+Z$`),
  );
  assert.equal(lines.length, 3);

  const json = await runToEnd("client.ts", ["--services", "--json", "--server", server], {
    BURROW_TOKEN: TOKEN,
  });
  assert.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as {
    services: Array<Record<string, unknown>>;
    truncated: boolean;
  };
  assert.equal(parsed.truncated, false);
  assert.deepEqual(parsed.services.map((s) => [s.group, s.app, s.port, s.bytesIn, s.description]), [
    ["shown", "ssh", block.from, 4321, "the home ssh, ask Ana"],
    ["shown", "web", block.from + 1, 0, undefined],
  ]);

  const free = await runToEnd("client.ts", ["--free-ports", "--server", server, "--token", TOKEN]);
  assert.equal(free.code, 0, free.stderr);
  assert.equal(free.stdout.trim(), `free ports: ${block.from + 2}-${block.to} (8 ports)`);
  const freeJson = await runToEnd("client.ts", [
    "--free-ports",
    "--json",
    "--server",
    server,
    "--token",
    TOKEN,
  ]);
  assert.deepEqual(JSON.parse(freeJson.stdout), {
    ranges: [[block.from + 2, block.to]],
    truncated: false,
  });

  const wrong = await runToEnd("client.ts", ["--services", "--server", server, "--token", "nope"]);
  assert.equal(wrong.code, 3);
  assert.match(
    wrong.stderr.trim(),
    /^burrow-client: refused by the server: authentication failed: wrong token \(auth_failed\)$/,
  );
  const noServer = await runToEnd("client.ts", ["--services", "--token", TOKEN]);
  assert.equal(noServer.code, 2);
  assert.match(noServer.stderr, /--services needs --server HOST:PORT/);
  const noToken = await runToEnd("client.ts", ["--free-ports", "--server", server]);
  assert.equal(noToken.code, 2);
  assert.match(noToken.stderr, /needs a token/);
});
