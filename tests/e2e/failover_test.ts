/**
 * A client with several servers (`server: [a, b]`, or a name with several
 * addresses) stays on the one it reached and moves to the next when that one
 * goes: killed, or stopping cleanly (then at once, without backing off). Its
 * app keeps its public port on the new server.
 */

import assert from "node:assert/strict";
import {
  assertEchoes,
  echoApp,
  groupFile,
  portBlock,
  Proc,
  startClient,
} from "../helpers/harness.ts";
import { makeTempDirSync } from "../helpers/temp.ts";
import { asTestClient, type TestServer } from "../helpers/library.ts";
import { startClient as libraryStartClient, startServer } from "../../mod.ts";

const TOKEN = "failover-token";

/** A server process on its own loopback address, for public ports and control alike. */
async function serverOn(host: string, ports: string): Promise<{ proc: Proc; port: number }> {
  const proc = new Proc("server.ts", [
    "--bind",
    `${host}:0`,
    "--public-host",
    host,
    "--ports",
    ports,
    "--token",
    TOKEN,
    "--state-dir",
    makeTempDirSync({ prefix: "burrow-failover-" }),
    "--log-level",
    "debug",
  ]);
  const m = await proc.stdout.wait(new RegExp(`^listening ${host.replaceAll(".", "\\.")}:(\\d+)$`));
  return { proc, port: Number(m[1]) };
}

/** Waits for `ready GROUP/APP HOST:PORT` on `host` and returns the port. */
async function readyOn(client: Proc, host: string, from: number): Promise<number> {
  const m = await client.stdout.wait(
    new RegExp(`^ready lab/echo ${host.replaceAll(".", "\\.")}:(\\d+)$`),
    30_000,
    from,
  );
  return Number(m[1]);
}

/** Connects to host:port and echoes 256 KiB byte-exact. */
async function echoesAt(host: string, port: number): Promise<void> {
  await assertEchoes(port, 256 * 1024, host);
}

Deno.test("a client with two servers moves to the second when the first is killed, keeping its port", async () => {
  const block = portBlock(10);
  using app = echoApp();
  const a = await serverOn("127.0.0.2", block.spec);
  const b = await serverOn("127.0.0.3", block.spec);
  const file = groupFile({
    server: `[127.0.0.2:${a.port}, 127.0.0.3:${b.port}]`,
    token: TOKEN,
    group: "lab",
    apps: [{ name: "echo", local: `127.0.0.1:${app.port}`, remote_port: block.from }],
  });
  await using client = startClient(file);
  try {
    assert.equal(await readyOn(client, "127.0.0.2", 0), block.from);
    await echoesAt("127.0.0.2", block.from);
    const mark = client.stdout.all.length;
    a.proc.kill("SIGKILL");
    assert.equal(await readyOn(client, "127.0.0.3", mark), block.from, "the same port on b");
    await echoesAt("127.0.0.3", block.from);
  } finally {
    await a.proc.stop();
    await b.proc.stop();
  }
});

Deno.test("a server that stops cleanly sends its clients to the next server at once", async () => {
  const block = portBlock(10);
  using app = echoApp();
  const a = await serverOn("127.0.0.2", block.spec);
  const b = await serverOn("127.0.0.3", block.spec);
  const file = groupFile({
    server: `[127.0.0.2:${a.port}, 127.0.0.3:${b.port}]`,
    token: TOKEN,
    group: "lab",
    apps: [{ name: "echo", local: `127.0.0.1:${app.port}`, remote_port: block.from + 1 }],
  });
  await using client = startClient(file);
  try {
    await readyOn(client, "127.0.0.2", 0);
    const mark = client.stdout.all.length;
    const errMark = client.stderr.all.length;
    a.proc.kill("SIGTERM");
    assert.equal(await readyOn(client, "127.0.0.3", mark), block.from + 1);
    await echoesAt("127.0.0.3", block.from + 1);
    const said = client.stderr.all.slice(errMark).join("\n");
    assert.match(
      said,
      /lost server 127\.0\.0\.2:\d+: server is shutting down.*moving to the next server/,
    );
    assert.doesNotMatch(said, /reconnecting in/, "no backoff before the next server");
    assert.equal(await a.proc.exitCode(), 0);
  } finally {
    await a.proc.stop();
    await b.proc.stop();
  }
});

Deno.test("a server name with several addresses is tried address by address", async () => {
  const block = portBlock(10);
  using app = echoApp();
  // One control port on both addresses, as a DNS name for a cluster's nodes gives.
  const probe = Deno.listen({ hostname: "127.0.0.3", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const stateDir = makeTempDirSync({ prefix: "burrow-failover-ca-" }); // one CA for both
  const servers: TestServer[] = [];
  for (const host of ["127.0.0.2", "127.0.0.3"]) {
    const s = await startServer({
      bind: `${host}:${port}`,
      publicHost: host,
      ports: block.spec,
      token: TOKEN,
      stateDir,
    });
    servers.push(Object.assign(s, {
      dial: `${host}:${port}`,
      [Symbol.asyncDispose]: () => s.close(),
    }));
  }
  const [first, second] = servers as [TestServer, TestServer];
  const asked: string[] = [];
  await using client = asTestClient(
    await libraryStartClient({
      server: `nodes.test:${port}`,
      lookup: (name) => {
        asked.push(name);
        return Promise.resolve(["127.0.0.2", "127.0.0.3"]);
      },
      token: TOKEN,
      group: "lab",
      stateDir: makeTempDirSync({ prefix: "burrow-failover-client-" }),
    }),
  );
  try {
    const tunnel = await client.expose({ name: "echo", local: `127.0.0.1:${app.port}` });
    assert.equal(tunnel.serverHost, "nodes.test");
    assert.equal(client.serverHost, "nodes.test");
    const remote = tunnel.remotePort;
    assert.equal(first.services().length, 1, "on the first address");
    await echoesAt("127.0.0.2", remote);
    const moved = new Promise<void>((resolve) =>
      client.addEventListener("ready", () => resolve(), { once: true })
    );
    await first.close();
    await moved;
    assert.equal(tunnel.remotePort, remote, "the same port on the second address");
    assert.equal(second.services().length, 1);
    await echoesAt("127.0.0.3", remote);
    assert.ok(asked.every((n) => n === "nodes.test") && asked.length >= 2, asked.join());
  } finally {
    for (const s of servers) await s.close();
  }
});
