/**
 * The cluster through the real programs: a real redis-server and server
 * processes on 127.0.0.2, .3 and .4 sharing one port range. Users reach a
 * group from every node (bytes checked with sha256), names and ports are
 * unique cluster-wide, a killed or stopped node's groups come back on
 * another node on the same port, Redis going away and coming back empty
 * keeps tunnels working, a frozen node cannot take back a group held
 * elsewhere, and the relay port drops anything but a proven node. A user
 * relayed from another node behaves as on one server: a reset on either
 * end ends the other end at once (not as a half-close), and a client that
 * cannot open its stream gets the user closed within the 10 s work wait.
 *
 * @module
 */

import assert from "node:assert/strict";
import { REDIS_MISSING, type RedisProcess, startRedis } from "../helpers/redis.ts";
import {
  nodeApi,
  nodeClient,
  type NodeOptions,
  type NodeProc,
  readyOn,
  startNode,
} from "../helpers/cluster_nodes.ts";
import {
  echoApp,
  fullyClosed,
  groupFile,
  localApp,
  portBlock,
  Proc,
  randomBytes,
  readAll,
  runToEnd,
  sha256,
  startClient,
  until,
  writeAll,
} from "../helpers/harness.ts";
import { waitFor, withDeadline } from "../helpers/cluster.ts";
import { makeOwnPki } from "../helpers/pki.ts";
import { pump, suiteCa } from "../helpers/net.ts";

const TOKEN = "cluster-test-token";
const HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const ignore = REDIS_MISSING !== undefined;

/**
 * Sends `size` random bytes to HOST:PORT, half-closes, and checks the echo by
 * sha256. A connection still open after 30 s is closed, so a broken relay
 * fails the test instead of hanging it.
 */
async function echoVia(host: string, port: number, size = 1 << 20): Promise<void> {
  const data = randomBytes(size);
  const conn = await Deno.connect({ hostname: host, port });
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, 30_000);
  try {
    const writing = (async () => {
      for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
      await conn.closeWrite();
    })();
    const got = new Uint8Array(size + 1);
    let have = 0;
    while (have < got.length) {
      const n = await conn.read(got.subarray(have));
      if (n === null) break;
      have += n;
    }
    await writing;
    assert.equal(have, size, `echo through ${host}:${port}: ${have} of ${size} bytes`);
    assert.equal(await sha256(got.slice(0, have)), await sha256(data));
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

/** True when HOST:PORT echoes a small message now. */
async function echoes(host: string, port: number): Promise<boolean> {
  try {
    await echoVia(host, port, 1024);
    return true;
  } catch {
    return false;
  }
}

/** True when nothing listens on HOST:PORT. */
async function refused(host: string, port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: host, port })).close();
    return false;
  } catch (err) {
    return err instanceof Deno.errors.ConnectionRefused;
  }
}

/** Everything HOST:PORT says before it closes (at most 64 bytes). */
async function hear(host: string, port: number): Promise<string> {
  try {
    const conn = await Deno.connect({ hostname: host, port });
    const buf = new Uint8Array(64);
    let have = 0;
    try {
      while (have < buf.length) {
        const n = await conn.read(buf.subarray(have));
        if (n === null) break;
        have += n;
      }
    } catch {
      /* reset */
    } finally {
      conn.close();
    }
    return new TextDecoder().decode(buf.subarray(0, have));
  } catch {
    return "";
  }
}

/** A local app that says `tag` and closes. */
function tagApp(tag: string) {
  return localApp(async (conn) => {
    await conn.write(new TextEncoder().encode(tag));
  });
}

/**
 * A TCP forwarder whose target can be switched. Switching closes the client
 * side of every open link but leaves the server side open and silent, so
 * the old server does not hear the client go (as in a partition).
 */
class SwitchProxy implements Disposable {
  readonly port: number;
  target: { hostname: string; port: number };
  #listener: Deno.TcpListener;
  #clients = new Set<Deno.Conn>();
  #kept = new Set<Deno.Conn>();
  #cut = new WeakSet<Deno.Conn>();

  constructor(target: { hostname: string; port: number }) {
    this.target = target;
    const listener = this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = listener.addr.port;
    (async () => {
      for await (const conn of listener) void this.#forward(conn);
    })().catch(() => {});
  }

  switchTo(target: { hostname: string; port: number }): void {
    this.target = target;
    for (const c of this.#clients) {
      this.#cut.add(c);
      quietClose(c);
    }
    this.#clients.clear();
  }

  async #forward(client: Deno.TcpConn): Promise<void> {
    let server: Deno.TcpConn;
    try {
      server = await Deno.connect(this.target);
    } catch {
      return client.close();
    }
    this.#clients.add(client);
    this.#kept.add(server);
    const copy = async (from: Deno.Conn, to: Deno.Conn) => {
      const buf = new Uint8Array(65536);
      try {
        while (true) {
          const n = await from.read(buf);
          if (n === null || this.#cut.has(client)) break;
          for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
        }
      } catch { /* closed */ }
      if (this.#cut.has(client)) return; // the server side stays open and silent
      quietClose(from);
      quietClose(to);
    };
    await Promise.all([copy(client, server), copy(server, client)]);
  }

  [Symbol.dispose](): void {
    this.#listener.close();
    for (const c of [...this.#clients, ...this.#kept]) quietClose(c);
  }
}

function quietClose(c: Deno.Conn): void {
  try {
    c.close();
  } catch { /* closed */ }
}

/** A store and nodes, stopped in reverse order. */
class Cluster implements AsyncDisposable {
  redis!: RedisProcess;
  nodes: NodeProc[] = [];
  ports = portBlock(20).spec;
  stack = new AsyncDisposableStack();

  static async start(count: number, o: Partial<NodeOptions> = {}): Promise<Cluster> {
    const c = new Cluster();
    c.redis = await startRedis();
    c.stack.defer(() => c.redis.stop());
    try {
      c.nodes = await Promise.all(HOSTS.slice(0, count).map((host, i) => c.node(i, host, o)));
    } catch (err) {
      await c.stack.disposeAsync();
      throw err;
    }
    return c;
  }

  async node(i: number, host: string, o: Partial<NodeOptions> = {}): Promise<NodeProc> {
    const node = await startNode({
      name: `n${i + 1}`,
      host,
      store: this.redis.url,
      ports: this.ports,
      token: TOKEN,
      ...o,
    });
    this.stack.use(node.proc);
    return node;
  }

  /** Each node's log, for a failure's message. */
  logs(): string {
    return this.nodes.map((n) => `--- ${n.name}:\n${n.proc.stderr.all.slice(-40).join("\n")}`)
      .join("\n");
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stack.disposeAsync();
  }
}

Deno.test({
  name:
    "cluster: a group on one node is served byte-exact on every node; names and ports are unique",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using cluster = await Cluster.start(3);
    const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    using app = echoApp();
    await using client = nodeClient(n1, { group: "lab", token: TOKEN, local: app.addr });
    const port = await readyOn(client, "lab");
    // Every node opens the port as soon as its view has the claim.
    for (const node of cluster.nodes) {
      await waitFor(() => echoes(node.host, port), `${node.name}:${port}`);
    }
    await Promise.all(cluster.nodes.map((node) => echoVia(node.host, port, 4 << 20)));
    // Several users at once through another node.
    await Promise.all([0, 1, 2, 3].map(() => echoVia(n3.host, port, 1 << 20)));
    // The holder served the relayed users with their real addresses.
    assert.match(n1.proc.stderr.text, /user 127\.0\.0\.1:\d+ on lab\/echo closed/);
    // One view: every node's API and metrics show the group with its node, and all nodes.
    for (const node of cluster.nodes) {
      const { groups } = await nodeApi(node, "api/groups");
      const lab = groups.find((g: { name: string }) => g.name === "lab");
      assert.equal(lab?.node, "n1", `${node.name}: ${JSON.stringify(groups)}`);
      assert.equal(lab.online, true);
      assert.deepEqual(lab.apps.map((a: { port: number }) => a.port), [port]);
      const status = await nodeApi(node, "api/status");
      assert.equal(status.cluster.node, node.name);
      assert.equal(status.cluster.storeState, "connected");
      assert.deepEqual(status.cluster.nodes.map((n: { name: string }) => n.name), [
        "n1",
        "n2",
        "n3",
      ]);
      assert.match(await nodeApi(node, "metrics"), /^burrow_cluster_nodes 3$/m);
    }
    assert.match(await nodeApi(n3, "metrics"), /^burrow_cluster_relayed_users_total [1-9]/m);

    // The same group on another node, from another client: refused cluster-wide.
    await using twin = nodeClient(n2, { group: "lab", token: TOKEN, local: app.addr });
    assert.equal(await twin.exitCode(30_000), 3);
    assert.match(twin.stderr.text, /group_live|live on node n1/);
    // The same port for another group on a third node: port_taken.
    await using other = nodeClient(n3, {
      group: "other",
      token: TOKEN,
      local: app.addr,
      remotePort: port,
    });
    assert.equal(await other.exitCode(30_000), 3);
    assert.match(other.stderr.text, /port_taken|taken on node n1/);

    // A client that goes away releases its claims: another client gets the port on another node.
    await client.stop();
    for (const node of cluster.nodes) {
      await waitFor(() => refused(node.host, port), `${port} closed`);
    }
    await using again = nodeClient(n2, {
      group: "other",
      token: TOKEN,
      local: app.addr,
      remotePort: port,
    });
    assert.equal(await readyOn(again, "other"), port);
    await waitFor(() => echoes(n1.host, port), `n1 relays ${port} to n2`, 30_000);
    await echoVia(n1.host, port);
  },
});

Deno.test("cluster: --cluster without BURROW_CLUSTER_SECRET exits 2 naming it", async () => {
  const { code, stderr } = await runToEnd("server.ts", [
    "--token",
    TOKEN,
    "--cluster",
    "redis://user:hunter2@127.0.0.1:1",
    "--relay",
    "127.0.0.1:0",
  ]);
  assert.equal(code, 2);
  assert.match(stderr, /BURROW_CLUSTER_SECRET/);
  assert.ok(!stderr.includes("hunter2"), stderr);
});

Deno.test({
  name: "cluster: the relay port drops garbage and a node with the wrong secret",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using cluster = await Cluster.start(2);
    const [n1] = cluster.nodes as [NodeProc, NodeProc];
    using app = echoApp();
    await using client = nodeClient(n1, { group: "lab", token: TOKEN, local: app.addr });
    const port = await readyOn(client, "lab");
    // Garbage on the relay port: dropped at once, well within the 5 s first-frame deadline.
    // (A peer that sends nothing at all on a TLS relay port keeps its socket until it goes:
    // Deno defers a TLS close until the handshake settles; see docs/cluster.md.)
    for (const size of [4096, 64]) {
      const conn = await Deno.connect({ hostname: n1.host, port: n1.relayPort });
      const started = Date.now();
      const timer = setTimeout(() => conn.close(), 20_000);
      await conn.write(randomBytes(size)).catch(() => 0);
      const buf = new Uint8Array(65536);
      try {
        while ((await conn.read(buf)) !== null) { /* whatever it says, until it closes */ }
      } catch { /* reset, or closed by the timer */ }
      clearTimeout(timer);
      try {
        conn.close();
      } catch { /* closed */ }
      const took = Date.now() - started;
      assert.ok(took < 9_000, `the relay port kept a peer sending ${size} bytes for ${took} ms`);
    }
    // A node with another secret joins the store but no node takes its links.
    const wrong = await cluster.node(2, HOSTS[2]!, { secret: "another-secret-0123456789" });
    await waitFor(() => refused(wrong.host, port).then((r) => !r), "the wrong node opens the port");
    assert.equal(await echoes(wrong.host, port), false);
    await waitFor(
      () => /is cluster\.secret the same on every node/.test(wrong.proc.stderr.text),
      "the wrong node says why",
    );
    // n1 logs its side once it has dropped the link, which may come a moment after.
    await waitFor(
      () => /not a valid proof of the cluster secret/.test(n1.proc.stderr.text),
      "n1 says why it dropped the wrong node",
    );
    // The proven nodes go on.
    await echoVia(HOSTS[1]!, port);
    // A second live node of the same name is refused at start: exit 2.
    await using twin = new Proc("server.ts", [
      "--bind",
      "127.0.0.4:0",
      "--public-host",
      "127.0.0.4",
      "--token",
      TOKEN,
      "--cluster",
      cluster.redis.url,
      "--node",
      "n1",
      "--relay",
      "127.0.0.4:0",
    ], { BURROW_CLUSTER_SECRET: "test-cluster-secret-0123456789" });
    assert.equal(await twin.exitCode(30_000), 2);
    assert.match(twin.stderr.text, /node name n1 is in use/);
  },
});

Deno.test({
  name: "cluster: kill -9 of the holding node, the group comes back on another node with its port",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using cluster = await Cluster.start(3);
    const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    using app = echoApp();
    await using client = nodeClient(n1, { group: "lab", token: TOKEN, local: app.addr });
    const port = await readyOn(client, "lab");
    await waitFor(() => echoes(n3.host, port), "n3 serves the port");
    n1.proc.kill("SIGKILL");
    await n1.proc.status;
    // Within the lease (3 s) plus a beat, the others drop the dead node's port.
    const died = Date.now();
    await waitFor(() => refused(n2.host, port), "n2 drops the dead node's port", 30_000);
    const gone = Date.now() - died;
    await client.stop();
    await using moved = nodeClient(n2, {
      group: "lab",
      token: TOKEN,
      local: app.addr,
      remotePort: port,
    });
    assert.equal(await readyOn(moved, "lab"), port);
    await waitFor(() => echoes(n3.host, port), "n3 relays to n2", 30_000);
    await echoVia(n2.host, port);
    await echoVia(n3.host, port);
    console.log(`dead node's port dropped after ${gone} ms (lease 3000 ms)`);
  },
});

Deno.test({
  name: "cluster: a client that reconnects to another node takes its group over at once, same port",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // A long lease: only a takeover by the client's run id can move the group this fast.
    await using cluster = await Cluster.start(2, { heartbeatTimeout: 60 });
    const [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
    using app = echoApp();
    using proxy = new SwitchProxy({ hostname: n1.host, port: n1.port });
    await using client = nodeClient({ control: `127.0.0.1:${proxy.port}` }, {
      group: "lab",
      token: TOKEN,
      local: app.addr,
    });
    const port = await readyOn(client, "lab");
    await waitFor(() => echoes(n2.host, port), "n2 relays to n1");
    const from = client.stdout.count;
    const moved = Date.now();
    proxy.switchTo({ hostname: n2.host, port: n2.port }); // the client's link to n1 breaks
    const again = await readyOn(client, "lab", "echo", from);
    assert.equal(again, port, cluster.logs());
    // The old node ends its session (the claim was taken) and relays the port to the new holder.
    await waitFor(() => /taken over on node n2|was lost/.test(n1.proc.stderr.text), "n1 lets go");
    await waitFor(() => echoes(n1.host, port), "n1 relays to n2", 30_000);
    await echoVia(n1.host, port);
    await echoVia(n2.host, port);
    const took = Date.now() - moved;
    assert.ok(took < 30_000, `the takeover took ${took} ms (lease 60 s)`);
  },
});

Deno.test({
  name: "cluster: a client listing two nodes moves to the second at once when its node stops",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // A long lease: the group can only come back this fast if the stopping node let it go.
    await using cluster = await Cluster.start(3, { heartbeatTimeout: 60 });
    const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    using app = echoApp();
    await using client = startClient(groupFile({
      server: `[${n1.control}, ${n2.control}]`,
      token: TOKEN,
      group: "lab",
      heartbeat_interval: 1,
      apps: [{ name: "echo", local: app.addr }],
    }));
    const port = await readyOn(client, "lab");
    await waitFor(() => echoes(n3.host, port), "n3 serves the port");
    const mark = client.stdout.all.length;
    const began = Date.now();
    n1.proc.kill("SIGTERM");
    const m = await client.stdout.wait(/^ready lab\/echo ([\d.]+):(\d+)$/, 30_000, mark);
    assert.equal(m[1], n2.host, "ready again on the second node");
    assert.equal(Number(m[2]), port, "with the same port");
    assert.ok(Date.now() - began < 20_000, "long before the 60 s lease could run out");
    assert.match(client.stderr.text, /moving to the next server/);
    await waitFor(() => echoes(n3.host, port), "n3 serves it again, relayed to n2", 15_000);
    await echoVia(n2.host, port);
  },
});

/**
 * A man in the middle between two nodes: it terminates their TLS with a
 * certificate of its own (for 127.0.0.1) and opens its own TLS link to the
 * real node, passing the plaintext both ways, so it could read every relayed
 * byte if the real node accepted the link.
 */
class RelayMitm implements AsyncDisposable {
  readonly port: number;
  target = 0;
  relayed = 0;
  #front: Deno.TlsListener;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();

  constructor(own: { cert: string; key: string }) {
    this.#front = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...own });
    this.port = this.#front.addr.port;
    this.#tasks.add(this.#accept());
  }

  async #accept(): Promise<void> {
    try {
      for await (const c of this.#front) {
        this.#conns.add(c);
        const task = (async () => {
          try {
            await c.handshake();
            const tcp = await Deno.connect({ hostname: HOSTS[0]!, port: this.target });
            const up = await Deno.startTls(tcp, {
              hostname: "burrow-server",
              caCerts: [suiteCa()],
            });
            this.#conns.add(up);
            this.relayed++;
            await Promise.all([pump(c, up), pump(up, c)]);
          } catch { /* gone */ }
        })();
        this.#tasks.add(task);
        task.finally(() => this.#tasks.delete(task));
      }
    } catch { /* closed */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#front.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await Promise.all([...this.#tasks]);
  }
}

Deno.test({
  name:
    "cluster: a man in the middle of a relay link (its own certificate) is refused by the real node",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const pki = await makeOwnPki("mitm root");
    await using mitm = new RelayMitm({ cert: pki.leafPem + pki.caPem, key: pki.leafKeyPem });
    await using redis = {
      r: await startRedis(),
      [Symbol.asyncDispose]() {
        return this.r.stop();
      },
    };
    const ports = portBlock(10).spec;
    const common = { store: redis.r.url, ports, token: TOKEN };
    // n1 tells the cluster to reach it at the MITM.
    const probe = Deno.listen({ hostname: HOSTS[0]!, port: 0 });
    mitm.target = probe.addr.port;
    probe.close();
    await using n1 = await startNode({
      name: "n1",
      host: HOSTS[0]!,
      ...common,
      relayPort: mitm.target,
      args: ["--advertise", `127.0.0.1:${mitm.port}`],
    });
    await using n2 = await startNode({ name: "n2", host: HOSTS[1]!, ...common });
    using app = echoApp();
    await using client = nodeClient(n1, { group: "lab", token: TOKEN, local: app.addr });
    const port = await readyOn(client, "lab");
    await echoVia(n1.host, port);
    await waitFor(async () => !(await refused(n2.host, port)), "n2 opens the port");
    // n2 relays the user to n1 through the MITM: the link never comes up, and no byte flows.
    assert.equal(await echoes(n2.host, port), false, "a user via n2 is not served over the MITM");
    await until(() => mitm.relayed, (n) => n >= 1, 15_000, "the MITM to carry a link");
    await until(
      () => n1.proc.stderr.text,
      (t) => /made over a TLS channel to another certificate/.test(t),
      15_000,
      "n1 to refuse the bound hello",
    );
  },
});

Deno.test({
  name: "cluster: a node that stops cleanly releases its claims at once",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // A long lease: only a release can free the names this fast.
    await using cluster = await Cluster.start(2, { heartbeatTimeout: 60 });
    const [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
    using app = echoApp();
    await using client = nodeClient(n1, { group: "lab", token: TOKEN, local: app.addr });
    const port = await readyOn(client, "lab");
    await waitFor(() => echoes(n2.host, port), "n2 serves the port");
    n1.proc.kill("SIGTERM");
    assert.equal(await n1.proc.exitCode(20_000), 0);
    await waitFor(() => refused(n2.host, port), "n2 drops the port", 15_000);
    await client.stop();
    await using moved = nodeClient(n2, {
      group: "lab",
      token: TOKEN,
      local: app.addr,
      remotePort: port,
    });
    assert.equal(await readyOn(moved, "lab"), port);
    await echoVia(n2.host, port);
  },
});

Deno.test({
  name: "cluster: Redis stopped and restarted empty: tunnels keep working, a registration waits",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using cluster = await Cluster.start(3);
    const [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    using app = echoApp();
    await using client = nodeClient(n1, { group: "lab", token: TOKEN, local: app.addr });
    const port = await readyOn(client, "lab");
    await waitFor(() => echoes(n2.host, port), "n2 serves the port");
    const redisPort = cluster.redis.port;
    await cluster.redis.stop();
    const stopped = n1.proc.stderr.count;
    // The dashboard says so.
    await waitFor(
      async () => (await nodeApi(n2, "api/status")).cluster.storeState === "unreachable",
      "n2's dashboard says the store is unreachable",
    );
    assert.match(await nodeApi(n2, "metrics"), /^burrow_cluster_store_up 0$/m);
    // Live tunnels, also relayed, go on while the store is away (past a lease).
    for (let i = 0; i < 4; i++) {
      await echoVia(n1.host, port, 256 << 10).catch((err) => {
        throw new Error(`${err}\n${cluster.logs()}`);
      });
      await echoVia(n2.host, port, 256 << 10);
      await new Promise((r) => setTimeout(r, 1000));
    }
    // A new registration waits instead of being refused.
    await using late = nodeClient(n3, { group: "late", token: TOKEN, local: app.addr });
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(late.stdout.text.includes("ready late/echo"), false);
    const redis = await startRedis({ port: redisPort });
    cluster.stack.defer(() => redis.stop());
    const latePort = await readyOn(late, "late");
    // Uniqueness holds again once the holder has reasserted what it holds.
    await n1.proc.stderr.wait(/reasserted \d+ claims/, 30_000, stopped);
    await using twin = nodeClient(n2, { group: "lab", token: TOKEN, local: app.addr });
    assert.equal(await twin.exitCode(30_000), 3);
    await waitFor(() => echoes(n1.host, latePort), "n1 serves the late group", 30_000);
    // n2 learns the reasserted claim from the feed and opens the port again (about one beat).
    await waitFor(() => echoes(n2.host, port), "n2 serves the port again", 30_000);
    await echoVia(n2.host, port);
  },
});

Deno.test({
  name: "cluster: a node frozen past the lease cannot take back a group held elsewhere",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using cluster = await Cluster.start(2);
    const [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
    using first = tagApp("first");
    using second = tagApp("second");
    await using client = nodeClient(n1, { group: "lab", token: TOKEN, local: first.addr });
    const port = await readyOn(client, "lab");
    await waitFor(async () => (await hear(n2.host, port)) === "first", "n2 relays to n1");
    n1.proc.kill("SIGSTOP");
    try {
      await waitFor(() => refused(n2.host, port), "n2 drops the frozen node's port", 30_000);
      await using moved = nodeClient(n2, {
        group: "lab",
        token: TOKEN,
        local: second.addr,
        remotePort: port,
      });
      assert.equal(await readyOn(moved, "lab"), port);
      n1.proc.kill("SIGCONT");
      // Thawed, n1 finds its leases taken: it ends its session and relays the port to n2.
      await waitFor(
        async () => (await hear(n1.host, port)) === "second",
        "n1 relays to the new holder",
        30_000,
      );
      await until(() => hear(n2.host, port), (t) => t === "second", 10_000);
      // It ended its session (silent past the lease, or its claims lost), never took it back.
      assert.match(n1.proc.stderr.text, /group lab from [\d.:]+ ended/);
    } finally {
      n1.proc.kill("SIGCONT");
    }
  },
});

/** Reads exactly `n` bytes from `conn`, or fewer if it ends first. */
async function readN(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  let have = 0;
  while (have < n) {
    const got = await conn.read(buf.subarray(have));
    if (got === null) break;
    have += got;
  }
  return buf.subarray(0, have);
}

/** The app's open connections on `node`'s dashboard. */
async function openOn(node: NodeProc, group: string, app: string): Promise<number | undefined> {
  const { groups } = await nodeApi(node, "api/groups");
  const g = groups.find((g: { name: string }) => g.name === group);
  return g?.apps.find((a: { name: string }) => a.name === app)?.connections;
}

Deno.test({
  name:
    "cluster: a reset on either end of a relayed user ends the other end at once, not as a half-close",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // As tunnel_test.ts on one server, with the user on n2 and the group on n1.
    const { connect, createServer } = await import("node:net");
    await using stack = new AsyncDisposableStack();
    // "resetter" answers its first bytes with a TCP reset.
    const resetter = createServer((socket) => {
      socket.on("error", () => {});
      socket.once("data", () => socket.resetAndDestroy());
    });
    await new Promise<void>((r) => resetter.listen(0, "127.0.0.1", () => r()));
    const resetterLocal = (resetter.address() as { port: number }).port;
    stack.defer(() => new Promise<void>((r) => resetter.close(() => r())));
    // "held" keeps the connection that says hello open until the test is done with it.
    let heldArrived!: (conn: Deno.TcpConn) => void;
    const heldReady = new Promise<Deno.TcpConn>((r) => heldArrived = r);
    const holder = stack.use(localApp(async (conn) => {
      if (new TextDecoder().decode(await readN(conn, 5)) !== "hello") return; // a probe
      heldArrived(conn);
      await new Promise(() => {}); // until holder.close()
    }));
    const cluster = stack.use(await Cluster.start(2));
    const [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
    const client = stack.use(startClient(groupFile({
      server: n1.control,
      token: TOKEN,
      group: "resets",
      heartbeat_interval: 1,
      apps: [
        { name: "held", local: holder.addr },
        { name: "resetter", local: `127.0.0.1:${resetterLocal}` },
      ],
    })));
    const heldPort = await readyOn(client, "resets", "held");
    const resetterPort = await readyOn(client, "resets", "resetter");
    for (const port of [heldPort, resetterPort]) {
      await waitFor(() => refused(n2.host, port).then((r) => !r), `n2 opens ${port}`);
    }

    // 1. The user on n2 resets: the app's connection on n1's client is closed entirely.
    const socket = connect(heldPort, n2.host);
    socket.on("error", () => {});
    await new Promise<void>((r) => socket.once("connect", () => r()));
    socket.write("hello");
    const appSide = await withDeadline(heldReady, "the held app gets the user's hello", 20_000);
    // (The probes above may take a moment to leave the holder's count.)
    await waitFor(async () => (await openOn(n1, "resets", "held")) === 1, "n1 counts the user");
    const userAddr = `127.0.0.1:${socket.localPort}`;
    const mark = client.stderr.count;
    const reset = Date.now();
    socket.resetAndDestroy();
    const line = await client.stderr.wait(
      /resets\/held: user (\S+) .*aborted by the user side/,
      10_000,
      mark,
    );
    assert.equal(line[1], userAddr, "the client saw the real user");
    assert.ok(await fullyClosed(appSide, 5_000), "the app's connection was only half-closed");
    const took = Date.now() - reset;
    assert.ok(took < 8_000, `the app's connection ended ${took} ms after the user's reset`);
    // Nothing stays open for it: not on the holder, not on the relaying node.
    await waitFor(async () => (await openOn(n1, "resets", "held")) === 0, "n1 counts 0 open");
    await waitFor(
      async () => /^burrow_cluster_relayed_users_open 0$/m.test(await nodeApi(n2, "metrics")),
      "n2 relays no user now",
    );

    // 2. The app resets: the user's connection on n2 is closed entirely.
    const holderMark = n1.proc.stderr.count;
    const user = await Deno.connect({ hostname: n2.host, port: resetterPort });
    await writeAll(user, new TextEncoder().encode("hi"));
    const ended = await n1.proc.stderr.wait(
      /user (\S+) on resets\/resetter closed: the app side reset or failed/,
      10_000,
      holderMark,
    );
    assert.equal(ended[1], `127.0.0.1:${user.localAddr.port}`, "the holder saw the real user");
    assert.ok(await fullyClosed(user, 5_000), "the user's connection was only half-closed");
    try {
      user.close();
    } catch { /* closed by fullyClosed */ }
    await waitFor(
      async () => (await openOn(n1, "resets", "resetter")) === 0,
      "n1 counts 0 open",
    );
  },
});

/**
 * Connects a user to HOST:PORT and resolves with how long it took the far
 * end to close it, and what it sent; gives up (closing it) after `capMs`.
 */
async function userClosedAfter(
  host: string,
  port: number,
  capMs = 30_000,
): Promise<{ address: string; seconds: number; bytes: number }> {
  const t0 = Date.now();
  const user = await Deno.connect({ hostname: host, port });
  const address = `${user.localAddr.hostname}:${user.localAddr.port}`;
  const cap = setTimeout(() => user.close(), capMs);
  try {
    const got = await readAll(user).catch(() => new Uint8Array());
    return { address, seconds: (Date.now() - t0) / 1000, bytes: got.length };
  } finally {
    clearTimeout(cap);
    try {
      user.close();
    } catch { /* closed */ }
  }
}

Deno.test({
  name:
    "cluster: a relayed user whose client answers no stream is closed within the 10 s work wait, as a local one",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // As resilience_test.ts on one server: the client is frozen, so the stream the
    // holder opens for the user is never answered. A long heartbeat timeout keeps
    // the frozen client's session (and the nodes) alive past the wait.
    await using cluster = await Cluster.start(2, { heartbeatTimeout: 30 });
    const [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
    using app = echoApp();
    await using client = nodeClient(n1, { group: "frozen", token: TOKEN, local: app.addr });
    const port = await readyOn(client, "frozen");
    await waitFor(() => echoes(n2.host, port), "n2 relays to n1");
    await echoVia(n1.host, port, 64 << 10);
    client.kill("SIGSTOP");
    try {
      const [local, relayed] = await Promise.all([
        userClosedAfter(n1.host, port),
        userClosedAfter(n2.host, port),
      ]);
      for (const [what, user] of [["local", local], ["relayed", relayed]] as const) {
        assert.equal(user.bytes, 0, `the ${what} user got bytes`);
        assert.ok(
          user.seconds >= 9.5 && user.seconds < 16,
          `the ${what} user was closed after ${user.seconds}s, not 10-16s\n${cluster.logs()}`,
        );
      }
      assert.ok(
        Math.abs(relayed.seconds - local.seconds) < 3,
        `relayed closed after ${relayed.seconds}s, local after ${local.seconds}s`,
      );
      // The holder says why, for each by its real address.
      for (const user of [local, relayed]) {
        const m = await n1.proc.stderr.wait(
          new RegExp(`user ${user.address.replaceAll(".", "\\.")} on frozen/echo (.*)$`),
          5_000,
        );
        assert.match(
          m[1] as string,
          /^failed \(the client did not answer on its work connection within 10s\): 0 bytes in, 0 out$/,
        );
      }
      console.log(`closed after: local ${local.seconds}s, relayed ${relayed.seconds}s`);
    } finally {
      client.kill("SIGCONT");
    }
  },
});
