/**
 * TLS end to end, with the real programs: the CA the server makes in its
 * state folder and reuses, pinning by fingerprint, trust on first use and a
 * changed identity, the operator's own certificate, plaintext on both sides
 * and the two mismatches, what a relay between client and server can read,
 * configuration errors, discovery over TLS, and men in the middle with a
 * publicly trusted certificate against pinning and trust on first use. Every test names its own
 * state folders, so none depends on what another recorded.
 */

import { makeOwnPki } from "../helpers/pki.ts";
import assert from "node:assert/strict";
import {
  assertEchoes,
  echoApp,
  echoThrough,
  freePort,
  groupFile,
  Proc,
  readyPort,
  runToEnd,
  sha256,
  startClient,
  startServer,
  suiteCa,
} from "../helpers/harness.ts";
import { makeTempDirSync } from "../helpers/temp.ts";
import { RecordingRelay, SplitChainMitm } from "../helpers/relays.ts";

const TOKEN = "tls-test-token-Vq93kX7";
const FP_LINE = /^sha256:[0-9a-f]{64}$/;

/** A new empty folder. */
function tempDir(): string {
  return makeTempDirSync({ prefix: "burrow-tls-" });
}

/** The DER bytes of every certificate in a PEM text (parsed here, not with lib/). */
function pemToDers(pem: string): Uint8Array<ArrayBuffer>[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => {
    const b64 = block.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "");
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  });
}

/** `sha256:HEX` of the first certificate in a PEM file. */
async function pemFingerprint(file: string): Promise<string> {
  const der = pemToDers(await Deno.readTextFile(file))[0];
  assert.ok(der, `no certificate in ${file}`);
  return `sha256:${await sha256(der)}`;
}

/** A group file for one echo app, with extra top-level lines (`fingerprint: ...`, `tls: false`). */
function tlsGroup(serverPort: number, group: string, local: string, extra: string[] = []): string {
  const file = groupFile({
    server: `127.0.0.1:${serverPort}`,
    token: TOKEN,
    group,
    apps: [{ name: "echo", local }],
  });
  if (extra.length > 0) Deno.writeTextFileSync(file, extra.join("\n") + "\n", { append: true });
  return file;
}

/** Waits for the exit code and checks it came within `withinMs` of `t0`. */
async function exitsWithin(proc: Proc, t0: number, withinMs: number): Promise<number> {
  const code = await proc.exitCode(15_000);
  const took = Date.now() - t0;
  assert.ok(took < withinMs, `exited after ${took} ms, expected under ${withinMs} ms`);
  return code;
}

/** Starts a server whose generated CA lives in `stateDir` (on `bindPort` if given). */
function serverIn(stateDir: string, o: { bindPort?: number; args?: string[] } = {}) {
  return startServer({
    token: TOKEN,
    ...(o.bindPort === undefined ? {} : { bindPort: o.bindPort }),
    args: ["--state-dir", stateDir, ...(o.args ?? [])],
  });
}

Deno.test("TLS is on by default: a CA is made in the state folder, reused, and trusted on first use", async () => {
  await using stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const state = tempDir();

  const first = await serverIn(state);
  stack.use(first.proc);
  const fp = first.fingerprint;
  assert.ok(fp !== undefined && FP_LINE.test(fp), `fingerprint line: ${fp}`);
  assert.deepEqual(
    first.proc.stdout.all.slice(0, 2).map((l) => l.split(" ")[0]),
    ["listening", "fingerprint"],
    "the listening line stays first, the fingerprint follows",
  );
  assert.equal(fp, await pemFingerprint(`${state}/tls/ca.pem`), "the fingerprint is the CA's");
  assert.equal((await Deno.stat(`${state}/tls`)).mode! & 0o777, 0o700);
  for (const key of ["ca-key.pem", "server-key.pem"]) {
    const mode = (await Deno.stat(`${state}/tls/${key}`)).mode! & 0o777;
    assert.equal(mode, 0o600, `${key} has mode ${mode.toString(8)}`);
  }
  assert.match(first.proc.stderr.text, /made a new certificate authority/);
  await first.proc.stop();

  const again = stack.use((await serverIn(state)).proc);
  const second = again.stdout.all.find((l) => l.startsWith("fingerprint "));
  assert.equal(second, `fingerprint ${fp}`, "a restart keeps the fingerprint");
  assert.doesNotMatch(again.stderr.text, /made a new certificate authority/);
  const port = Number(again.stdout.all.find((l) => l.startsWith("listening "))?.split(":")[1]);

  const clientState = tempDir();
  const client = stack.use(
    startClient(tlsGroup(port, "tofu", app.addr), ["--state-dir", clientState]),
  );
  const publicPort = await readyPort(client, "tofu", "echo");
  const at = `127.0.0.1:${port}`;
  await client.stderr.wait(new RegExp(`trusting the server at ${at} on first use.*${fp}`));
  const known = await Deno.readTextFile(`${clientState}/known_servers`);
  assert.ok(known.split("\n").includes(`${at} ${fp}`), `known_servers:\n${known}`);
  await assertEchoes(publicPort);
});

Deno.test("a pinned fingerprint (any case, with colons) connects; a wrong one exits 3 at once; discovery pins too", async () => {
  await using stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const server = await serverIn(tempDir());
  stack.use(server.proc);
  const hex = server.fingerprint!.slice("sha256:".length);
  const shouted = "SHA256:" + hex.toUpperCase().match(/../g)!.join(":");
  const wrong = `sha256:${hex.slice(0, 63)}${hex[63] === "0" ? "1" : "0"}`;

  const pinnedState = tempDir();
  const pinned = stack.use(startClient(
    tlsGroup(server.port, "pinned", app.addr, [`fingerprint: "${shouted}"`]),
    ["--state-dir", pinnedState],
  ));
  const t0 = Date.now();
  const impostor = stack.use(startClient(
    tlsGroup(server.port, "impostor", app.addr, [`fingerprint: ${wrong}`]),
    ["--state-dir", tempDir()],
  ));
  const [publicPort, code] = await Promise.all([
    readyPort(pinned, "pinned", "echo"),
    exitsWithin(impostor, t0, 3_000),
  ]);
  await assertEchoes(publicPort);
  assert.doesNotMatch(
    pinned.stderr.text,
    /first use/,
    "a pinned server is not trusted on first use",
  );
  await assert.rejects(Deno.stat(`${pinnedState}/known_servers`), Deno.errors.NotFound);
  assert.equal(code, 3, impostor.stderr.text);
  assert.match(impostor.stderr.text, /is not the one pinned.*\(identity_changed\)$/m);
  assert.ok(!impostor.stdout.text.includes("ready"), "the impostor's server went live");

  // Discovery with the same pins.
  const ask = (fp: string) =>
    new Proc("client.ts", [
      "--services",
      "--server",
      `127.0.0.1:${server.port}`,
      "--token",
      TOKEN,
      "--fingerprint",
      fp,
      "--state-dir",
      tempDir(),
    ]);
  const good = ask(shouted);
  const bad = ask(wrong);
  const [goodCode, badCode] = await Promise.all([good.exitCode(), bad.exitCode()]);
  assert.equal(goodCode, 0, good.stderr.text);
  assert.match(good.stdout.text, new RegExp(`^pinned\\s+echo\\s+${publicPort}\\s`, "m"));
  assert.equal(badCode, 3, bad.stderr.text);
  assert.match(bad.stderr.text, /is not the one pinned.*\(identity_changed\)/);
  assert.equal(bad.stdout.text, "");
});

Deno.test("trust on first use: a server with a new CA at the same address is refused, running or restarted", async () => {
  await using stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const bindPort = freePort();
  const a = await serverIn(tempDir(), { bindPort });
  stack.use(a.proc);
  const clientState = tempDir();
  const file = tlsGroup(bindPort, "tofu-change", app.addr);
  const client = stack.use(startClient(file, ["--state-dir", clientState]));
  await assertEchoes(await readyPort(client, "tofu-change", "echo"));
  const at = `127.0.0.1:${bindPort}`;
  const known = `${at} ${a.fingerprint}`;
  assert.ok((await Deno.readTextFile(`${clientState}/known_servers`)).includes(known));

  // Another server with its own CA takes the address over.
  await a.proc.stop();
  const b = await serverIn(tempDir(), { bindPort });
  stack.use(b.proc);
  assert.notEqual(b.fingerprint, a.fingerprint);

  assert.equal(await client.exitCode(15_000), 3, client.stderr.text);
  const changed = new RegExp(
    `THE SERVER'S IDENTITY CHANGED: ${at} now presents certificate authority ${b.fingerprint}` +
      `.*\\(identity_changed\\)$`,
    "m",
  );
  assert.match(client.stderr.text, changed);
  assert.equal(client.stdout.all.filter((l) => l.startsWith("ready")).length, 1, "went live again");

  const t0 = Date.now();
  const fresh = stack.use(startClient(file, ["--state-dir", clientState]));
  assert.equal(await exitsWithin(fresh, t0, 3_000), 3, fresh.stderr.text);
  assert.match(fresh.stderr.text, changed);
  assert.ok(
    (await Deno.readTextFile(`${clientState}/known_servers`)).includes(known),
    "the record still names the first CA",
  );
});

Deno.test("the operator's own certificate: its CA's fingerprint is printed; ca: verifies it, another CA is refused", async () => {
  await using stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const [own, other] = await Promise.all([makeOwnPki("operator CA"), makeOwnPki("another CA")]);
  const dir = tempDir();
  Deno.writeTextFileSync(`${dir}/chain.pem`, own.leafPem + own.caPem);
  Deno.writeTextFileSync(`${dir}/key.pem`, own.leafKeyPem, { mode: 0o600 });
  Deno.writeTextFileSync(`${dir}/ca.pem`, own.caPem);
  Deno.writeTextFileSync(`${dir}/other-ca.pem`, other.caPem);

  const server = await startServer({
    token: TOKEN,
    args: ["--tls-cert", `${dir}/chain.pem`, "--tls-key", `${dir}/key.pem`],
  });
  stack.use(server.proc);
  assert.equal(server.fingerprint, `sha256:${await sha256(own.caDer)}`);

  const clientState = tempDir();
  const trusting = stack.use(startClient(
    tlsGroup(server.port, "own-ca", app.addr, [`ca: ${dir}/ca.pem`]),
    ["--state-dir", clientState],
  ));
  const t0 = Date.now();
  const stranger = stack.use(startClient(
    tlsGroup(server.port, "other-ca", app.addr, [`ca: ${dir}/other-ca.pem`]),
    ["--state-dir", tempDir()],
  ));
  const [publicPort, code] = await Promise.all([
    readyPort(trusting, "own-ca", "echo"),
    exitsWithin(stranger, t0, 3_000),
  ]);
  await assertEchoes(publicPort);
  assert.doesNotMatch(trusting.stderr.text, /first use/);
  await assert.rejects(Deno.stat(`${clientState}/known_servers`), Deno.errors.NotFound);
  assert.equal(code, 3, stranger.stderr.text);
  assert.match(
    stranger.stderr.text,
    /cannot verify the server at 127\.0\.0\.1:\d+.*\(identity_changed\)$/m,
  );
});

Deno.test("plaintext on both sides works with warnings; each mismatch fails fast on both sides", async () => {
  await using stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const [plain, secure] = await Promise.all([
    serverIn(tempDir(), { args: ["--no-tls"] }),
    serverIn(tempDir()),
  ]);
  stack.use(plain.proc);
  stack.use(secure.proc);
  assert.equal(plain.fingerprint, undefined);
  assert.ok(!plain.proc.stdout.text.includes("fingerprint"), plain.proc.stdout.text);
  await plain.proc.stderr.wait(/TLS is off/);

  const t0 = Date.now();
  const both = stack.use(startClient(tlsGroup(plain.port, "plain", app.addr, ["tls: false"])));
  const tlsToPlain = stack.use(
    startClient(tlsGroup(plain.port, "tls-to-plain", app.addr), ["--state-dir", tempDir()]),
  );
  const plainToTls = stack.use(
    startClient(tlsGroup(secure.port, "plain-to-tls", app.addr, ["tls: false"])),
  );
  const [publicPort, code1, code2] = await Promise.all([
    readyPort(both, "plain", "echo"),
    exitsWithin(tlsToPlain, t0, 3_000),
    exitsWithin(plainToTls, t0, 3_000),
  ]);
  await assertEchoes(publicPort);
  await both.stderr.wait(/TLS is off/);

  assert.equal(code1, 3, tlsToPlain.stderr.text);
  assert.match(tlsToPlain.stderr.text, /answered in plaintext.*\(tls_mismatch\)$/m);
  await plain.proc.stderr.wait(/speaks TLS, but this server runs with --no-tls/, 3_000);

  assert.equal(code2, 3, plainToTls.stderr.text);
  assert.match(
    plainToTls.stderr.text,
    /speaks TLS but this client has tls: false.*\(tls_mismatch\)$/m,
  );
  await secure.proc.stderr.wait(/sent plaintext, but this server requires TLS/, 3_000);
});

Deno.test("a relay between client and server reads neither the data nor the token; without TLS it reads the data", async () => {
  await using stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const phrase = "BURROW-PLAINTEXT-MARKER the quick brown fox ";
  const marker = new TextEncoder().encode(phrase.repeat(Math.ceil(65536 / phrase.length)));

  /** Runs the marker through a tunnel whose control and work connections cross a relay. */
  const through = async (secure: boolean): Promise<RecordingRelay> => {
    const server = await serverIn(tempDir(), { args: secure ? [] : ["--no-tls"] });
    stack.use(server.proc);
    const relay = stack.use(new RecordingRelay(server.port));
    const group = secure ? "relay-tls" : "relay-plain";
    const client = stack.use(startClient(
      tlsGroup(relay.port, group, app.addr, secure ? [] : ["tls: false"]),
      ["--state-dir", tempDir()],
    ));
    const publicPort = await readyPort(client, group, "echo");
    assert.equal(await echoThrough(publicPort, marker), await sha256(marker));
    await client.stop();
    return relay;
  };
  const [secure, plain] = await Promise.all([through(true), through(false)]);

  // Both relays carried the marker both ways (plus the control traffic).
  for (const relay of [secure, plain]) {
    assert.ok(relay.total >= 2 * marker.length, `the relay saw only ${relay.total} bytes`);
    assert.ok(!relay.saw(TOKEN), "the token crossed the relay");
  }
  // The control frames are searchable too: the plaintext hello names the group.
  assert.ok(
    plain.saw("relay-plain"),
    "the plaintext hello should be readable (the check is blind)",
  );
  assert.ok(!secure.saw("relay-tls"), "the group name crossed the TLS relay in the clear");
  assert.ok(!secure.saw(phrase), "the marker crossed the TLS relay in the clear");
  assert.ok(plain.saw(phrase), "the marker should be readable without TLS (the check is blind)");
});

Deno.test("TLS configuration errors exit 2 with one line naming the flag, key or file", async () => {
  const dir = tempDir();
  const [own, other] = await Promise.all([makeOwnPki("operator CA"), makeOwnPki("another CA")]);
  Deno.writeTextFileSync(`${dir}/chain.pem`, own.leafPem + own.caPem);
  Deno.writeTextFileSync(`${dir}/wrong-key.pem`, other.leafKeyPem);
  Deno.writeTextFileSync(`${dir}/not-a-key.pem`, "hello\n");
  Deno.writeTextFileSync(`${dir}/server.yaml`, "tls:\n  cert: missing.pem\n  key: key.pem\n");
  const group = `${dir}/group.yaml`;
  Deno.writeTextFileSync(
    group,
    "server: 127.0.0.1:1\ntoken: t\ngroup: g\nfingerprint: sha256:abc\napps:\n  - name: a\n    local: 127.0.0.1:1\n",
  );
  const server = (args: string[]) =>
    runToEnd("server.ts", ["--bind", "127.0.0.1:0", "--token", TOKEN, "--state-dir", dir, ...args]);

  const [noKey, missing, fromYaml, notKey, mismatched, badFp] = await Promise.all([
    server(["--tls-cert", `${dir}/chain.pem`]),
    server(["--tls-cert", `${dir}/nope.pem`, "--tls-key", `${dir}/wrong-key.pem`]),
    server(["--config", `${dir}/server.yaml`]),
    server(["--tls-cert", `${dir}/chain.pem`, "--tls-key", `${dir}/not-a-key.pem`]),
    server(["--tls-cert", `${dir}/chain.pem`, "--tls-key", `${dir}/wrong-key.pem`]),
    runToEnd("client.ts", [group]),
  ]);
  const cases: Array<[string, { code: number; stderr: string }, RegExp]> = [
    ["--tls-cert alone", noKey, /--tls-key/],
    ["a missing cert file", missing, new RegExp(`tls\\.cert: cannot read ${dir}/nope\\.pem`)],
    ["a missing cert file in YAML", fromYaml, new RegExp(`tls\\.cert: cannot read ${dir}/missing`)],
    ["a key file without a key", notKey, /tls\.key: no PEM private key/],
    ["a key that is not the certificate's", mismatched, /tls: cannot use the certificate and key/],
    [
      "a malformed fingerprint",
      badFp,
      new RegExp(`${group}: fingerprint \\(line 4\\): must be sha256: and 64 hex digits`),
    ],
  ];
  for (const [what, result, line] of cases) {
    assert.equal(result.code, 2, `${what}: exit ${result.code}\n${result.stderr}`);
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `${what}: more than one line:\n${result.stderr}`);
    assert.match(lines[0]!, line, what);
    assert.ok(!result.stderr.includes(TOKEN), `${what}: the token was printed`);
  }
});

Deno.test("pinning: a MITM with a publicly trusted certificate for the address cannot pass by showing the pinned CA to the first connection only", async () => {
  await using stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const server = await startServer({ token: TOKEN });
  stack.use(server.proc);
  assert.ok(server.fingerprint);
  // The "public" CA is in the client's trust store (DENO_CERT), as a
  // corporate interception root or a mis-issued public certificate would be.
  const [pub, own] = await Promise.all([makeOwnPki("public root"), makeOwnPki("attacker")]);
  const dir = tempDir();
  Deno.writeTextFileSync(`${dir}/public-root.pem`, pub.caPem);
  const mitm = stack.use(
    new SplitChainMitm(
      server.port,
      { cert: own.leafPem + suiteCa(), key: own.leafKeyPem },
      { cert: pub.leafPem + pub.caPem, key: pub.leafKeyPem },
    ),
  );
  const file = tlsGroup(mitm.port, "pinned-mitm", app.addr, [`fingerprint: ${server.fingerprint}`]);
  const client = stack.use(startClient(file, [], {
    DENO_CERT: `${dir}/public-root.pem`,
    XDG_STATE_HOME: dir,
  }));
  const outcome = await readyPort(client, "pinned-mitm", "echo", 0, 20_000).then(
    () => "ready",
    () => client.exitCode().then((code) => `exit ${code}`),
  );
  assert.equal(outcome, "exit 3", client.stderr.text);
  assert.match(client.stderr.text, /identity|verify|certificate/i);
});

Deno.test("trust on first use: a recorded server cannot be replaced by a MITM with a publicly trusted certificate", async () => {
  await using stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const server = await startServer({ token: TOKEN });
  stack.use(server.proc);
  const pub = await makeOwnPki("public root");
  const dir = tempDir();
  Deno.writeTextFileSync(`${dir}/public-root.pem`, pub.caPem);
  const env = { DENO_CERT: `${dir}/public-root.pem`, XDG_STATE_HOME: dir };
  const publicCert = { cert: pub.leafPem + pub.caPem, key: pub.leafKeyPem };
  const mitm = stack.use(new SplitChainMitm(server.port, publicCert, publicCert));
  // The client meets the real server first (it is recorded), then the MITM at the same address.
  const first = stack.use(startClient(tlsGroup(server.port, "tofu-mitm", app.addr), [], env));
  await readyPort(first, "tofu-mitm", "echo");
  await first.stop();
  const known = Deno.readTextFileSync(`${dir}/burrow/known_servers`);
  Deno.writeTextFileSync(
    `${dir}/burrow/known_servers`,
    known.replaceAll(`127.0.0.1:${server.port} `, `127.0.0.1:${mitm.port} `),
  );
  const client = stack.use(startClient(tlsGroup(mitm.port, "tofu-mitm", app.addr), [], env));
  const outcome = await readyPort(client, "tofu-mitm", "echo", 0, 20_000).then(
    () => "ready",
    () => client.exitCode().then((code) => `exit ${code}`),
  );
  assert.equal(outcome, "exit 3", client.stderr.text);
  assert.match(client.stderr.text, /IDENTITY CHANGED/);
});
