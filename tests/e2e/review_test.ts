/**
 * Regression tests for defects found in a security review: each test names
 * the defect it guards against.
 */

import { makeOwnPki } from "../helpers/pki.ts";
import assert from "node:assert/strict";
import {
  echoApp,
  groupFile,
  portBlock,
  readyPort,
  startClient,
  startServer,
  suiteCa,
  writeAll,
} from "../helpers/harness.ts";

const TOKEN = "review-test-token-Zp41qW";
/** A CA and a leaf for 127.0.0.1, in the shape this file uses. */
async function makePki(
  caName: string,
): Promise<{ caPem: string; leafPem: string; keyPem: string }> {
  const pki = await makeOwnPki(caName);
  return { caPem: pki.caPem, leafPem: pki.leafPem, keyPem: pki.leafKeyPem };
}

/**
 * A man in the middle that holds a certificate for 127.0.0.1 from a CA the
 * client's trust store knows (a "public" one), but not the server's CA key.
 * To the client's first connection (the one that reads the chain) it shows a
 * chain that ends in the genuine, pinned CA certificate (public knowledge)
 * over a leaf of its own; to every later connection it shows its "public"
 * certificate, and relays the plaintext to the real server.
 */
class SplitChainMitm implements AsyncDisposable {
  readonly port: number;
  #front: Deno.TcpListener;
  #peekTls: Deno.TlsListener;
  #realTls: Deno.TlsListener;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #seen = 0;
  /** Connections the MITM terminated with its "public" certificate and relayed. */
  relayed = 0;

  constructor(
    target: number,
    peek: { cert: string; key: string },
    real: { cert: string; key: string },
  ) {
    this.#front = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = this.#front.addr.port;
    this.#peekTls = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...peek });
    this.#realTls = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...real });
    this.#track(this.#acceptFront());
    this.#track(this.#acceptReal(target));
    this.#track(this.#acceptPeek());
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #acceptFront(): Promise<void> {
    try {
      for await (const a of this.#front) {
        const inner = this.#seen++ === 0 ? this.#peekTls : this.#realTls;
        this.#track(this.#splice(a, (inner.addr as Deno.NetAddr).port));
      }
    } catch { /* closed */ }
  }

  async #acceptPeek(): Promise<void> {
    try {
      for await (const c of this.#peekTls) {
        this.#conns.add(c);
        c.handshake().catch(() => {}).finally(() => this.#close(c));
      }
    } catch { /* closed */ }
  }

  async #acceptReal(target: number): Promise<void> {
    try {
      for await (const c of this.#realTls) {
        this.#conns.add(c);
        this.#track((async () => {
          try {
            await c.handshake();
            this.relayed++;
            const tcp = await Deno.connect({ hostname: "127.0.0.1", port: target });
            const up = await Deno.startTls(tcp, {
              hostname: "burrow-server",
              caCerts: [suiteCa()],
            });
            this.#conns.add(up);
            await Promise.all([this.#pump(c, up), this.#pump(up, c)]);
          } catch { /* gone */ }
        })());
      }
    } catch { /* closed */ }
  }

  async #splice(a: Deno.TcpConn, port: number): Promise<void> {
    this.#conns.add(a);
    try {
      const b = await Deno.connect({ hostname: "127.0.0.1", port });
      this.#conns.add(b);
      await Promise.all([this.#pump(a, b), this.#pump(b, a)]);
    } catch { /* gone */ }
  }

  async #pump(src: Deno.Conn, dst: Deno.Conn): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await src.read(buf);
        if (n === null) break;
        await writeAll(dst, buf.subarray(0, n));
      }
    } catch { /* reset */ }
    this.#close(src);
    this.#close(dst);
  }

  #close(conn: Deno.Conn): void {
    this.#conns.delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const l of [this.#front, this.#peekTls, this.#realTls]) {
      try {
        l.close();
      } catch { /* closed */ }
    }
    for (const c of [...this.#conns]) this.#close(c);
    await Promise.all([...this.#tasks]);
  }
}

Deno.test("pinning: a MITM with a publicly trusted certificate for the address cannot pass by showing the pinned CA to the first connection only", async () => {
  await using stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const server = await startServer({ token: TOKEN });
  stack.defer(() => server.proc.stop());
  assert.ok(server.fingerprint);
  // The "public" CA is in the client's trust store (DENO_CERT), as a
  // corporate interception root or a mis-issued public certificate would be.
  const [pub, own] = await Promise.all([makePki("public root"), makePki("attacker")]);
  const dir = Deno.makeTempDirSync({ prefix: "burrow-review-" });
  Deno.writeTextFileSync(`${dir}/public-root.pem`, pub.caPem);
  const mitm = new SplitChainMitm(
    server.port,
    { cert: own.leafPem + suiteCa(), key: own.keyPem },
    { cert: pub.leafPem + pub.caPem, key: pub.keyPem },
  );
  stack.use(mitm);
  const file = groupFile({
    server: `127.0.0.1:${mitm.port}`,
    token: TOKEN,
    group: "pinned-mitm",
    apps: [{ name: "echo", local: app.addr }],
  });
  Deno.writeTextFileSync(file, `fingerprint: ${server.fingerprint}\n`, { append: true });
  const client = startClient(file, [], {
    DENO_CERT: `${dir}/public-root.pem`,
    XDG_STATE_HOME: dir,
  });
  stack.defer(() => client.stop());
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
  stack.defer(() => server.proc.stop());
  const pub = await makePki("public root");
  const dir = Deno.makeTempDirSync({ prefix: "burrow-review-" });
  Deno.writeTextFileSync(`${dir}/public-root.pem`, pub.caPem);
  const env = { DENO_CERT: `${dir}/public-root.pem`, XDG_STATE_HOME: dir };
  const publicCert = { cert: pub.leafPem + pub.caPem, key: pub.keyPem };
  const mitm = new SplitChainMitm(server.port, publicCert, publicCert);
  stack.use(mitm);
  // The client meets the real server first (it is recorded), then the MITM at the same address.
  const direct = groupFile({
    server: `127.0.0.1:${server.port}`,
    token: TOKEN,
    group: "tofu-mitm",
    apps: [{ name: "echo", local: app.addr }],
  });
  const first = startClient(direct, [], env);
  await readyPort(first, "tofu-mitm", "echo");
  await first.stop();
  const known = Deno.readTextFileSync(`${dir}/burrow/known_servers`);
  Deno.writeTextFileSync(
    `${dir}/burrow/known_servers`,
    known.replaceAll(`127.0.0.1:${server.port} `, `127.0.0.1:${mitm.port} `),
  );
  const viaMitm = groupFile({
    server: `127.0.0.1:${mitm.port}`,
    token: TOKEN,
    group: "tofu-mitm",
    apps: [{ name: "echo", local: app.addr }],
  });
  const client = startClient(viaMitm, [], env);
  stack.defer(() => client.stop());
  const outcome = await readyPort(client, "tofu-mitm", "echo", 0, 20_000).then(
    () => "ready",
    () => client.exitCode().then((code) => `exit ${code}`),
  );
  assert.equal(outcome, "exit 3", client.stderr.text);
  assert.match(client.stderr.text, /IDENTITY CHANGED/);
});

Deno.test("revocation: a token changed while a client is in its handshake does not give that client a session", async () => {
  const { startServer: serve, startClient: connect } = await import("../../mod.ts");
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  let entered!: () => void;
  const inHook = new Promise<void>((resolve) => entered = resolve);
  const server = await serve({
    bind: "127.0.0.1:0",
    ports: portBlock().spec,
    publicHost: "127.0.0.1",
    tls: false,
    users: [{ group: "team", token: "old-token-4kq2" }],
    // Any await between the proof check and the session (here the onAuth hook).
    onAuth: async () => {
      entered();
      await held;
      return true;
    },
  });
  try {
    const client = connect({
      server: `127.0.0.1:${server.addr.port}`,
      token: "old-token-4kq2",
      group: "team",
      tls: false,
    });
    client.then((c) => c.close(), () => {});
    await inHook;
    server.setUsers([{ group: "team", token: "new-token-9zx7" }]);
    release();
    await assert.rejects(client, (err: Error & { code?: string }) => err.code === "auth_failed");
    assert.deepEqual(server.groups().filter((g) => g.online).map((g) => g.name), []);
  } finally {
    await server.close();
  }
});

Deno.test("max_connections: users admitted together while an onUserConnect hook answers do not exceed the group's quota", async () => {
  const { startServer: serve, startClient: connect } = await import("../../mod.ts");
  // Every user ends up either at the app or closed by the server; count both.
  let reached = 0;
  let closed = 0;
  let settle!: () => void;
  const settled = new Promise<void>((resolve) => settle = resolve);
  const check = () => reached + closed === 3 && settle();
  const local = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const appConns: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of local) {
      appConns.push(conn);
      reached++;
      check();
    }
  })().catch(() => {});
  let arrived = 0;
  let allArrived!: () => void;
  const three = new Promise<void>((resolve) => allArrived = resolve);
  const server = await serve({
    bind: "127.0.0.1:0",
    ports: portBlock().spec,
    publicHost: "127.0.0.1",
    tls: false,
    users: [{ group: "quota", token: "quota-token-7hd2", maxConnections: 1 }],
    // An asynchronous hook: every user is asked about before any is counted.
    onUserConnect: async () => {
      if (++arrived === 3) allArrived();
      await three;
      return true;
    },
  });
  const client = await connect({
    server: `127.0.0.1:${server.addr.port}`,
    token: "quota-token-7hd2",
    group: "quota",
    tls: false,
  });
  const users: Deno.TcpConn[] = [];
  try {
    const tunnel = await client.expose({
      name: "app",
      local: `127.0.0.1:${local.addr.port}`,
      remotePort: 0,
    });
    for (let i = 0; i < 3; i++) {
      users.push(await Deno.connect({ hostname: "127.0.0.1", port: tunnel.remotePort }));
    }
    for (const u of users) {
      u.read(new Uint8Array(1)).catch(() => null).finally(() => {
        closed++;
        check();
      });
    }
    await settled;
    assert.equal(reached, 1, "more users reached the app than the group's max_connections");
    assert.equal(closed, 2);
  } finally {
    for (const c of [...users, ...appConns]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await client.close();
    await server.close();
    local.close();
    await serving;
  }
});

Deno.test("lockout: a client that stops right after it connects does not lock its own address out (its pooled work connections arrive after its session ended)", async () => {
  const { startServer: serve, startClient: connect } = await import("../../mod.ts");
  const server = await serve({
    bind: "127.0.0.1:0",
    ports: portBlock().spec,
    publicHost: "127.0.0.1",
    tls: false,
    users: [{ group: "mine", token: "my-own-token-5sk1" }],
    limits: { authFailures: 5 }, // fewer than the client's pooled work connections (8)
  });
  try {
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) {
      codes.push(
        await connect({
          server: `127.0.0.1:${server.addr.port}`,
          token: "my-own-token-5sk1",
          group: "mine",
          tls: false,
        }).then(
          async (client) => {
            await client.close();
            return "ok";
          },
          (err: Error & { code?: string }) => err.code ?? String(err),
        ),
      );
    }
    assert.deepEqual(codes, ["ok", "ok", "ok", "ok"]);
  } finally {
    await server.close();
  }
});

Deno.test("lockout: successful logins with a token one holds do not reset the count of failed guesses at another group's token", async () => {
  const { startServer: serve, startClient: connect } = await import("../../mod.ts");
  const server = await serve({
    bind: "127.0.0.1:0",
    ports: portBlock().spec,
    publicHost: "127.0.0.1",
    tls: false,
    users: [
      { group: "mine", token: "my-own-token-5sk1" },
      { group: "victim", token: "victims-token-8qm3" },
    ],
    limits: { authFailures: 5 },
  });
  const login = (group: string, token: string) =>
    connect({ server: `127.0.0.1:${server.addr.port}`, token, group, tls: false }).then(
      async (client) => {
        await client.close();
        return "ok";
      },
      (err: Error & { code?: string }) => err.code ?? String(err),
    );
  try {
    const codes: string[] = [];
    for (let round = 0; round < 3; round++) {
      // Three free guesses, then a login of one's own to wipe the slate.
      for (let i = 0; i < 3; i++) codes.push(await login("victim", `guess-${round}-${i}`));
      codes.push(await login("mine", "my-own-token-5sk1"));
    }
    assert.ok(codes.includes("locked_out"), `never locked out: ${codes.join(" ")}`);
  } finally {
    await server.close();
  }
});
