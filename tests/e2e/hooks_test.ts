/**
 * Server hooks (allow, refuse, observe) and client events, in one process.
 */

import assert from "node:assert/strict";
import { type CloseInfo, RefusedError, startClient, startServer } from "../../mod.ts";
import { asTestClient, libraryServer } from "../helpers/library.ts";
import {
  echoApp,
  echoThrough,
  portBlock,
  randomBytes,
  readAll,
  sha256,
  writeAll,
} from "../helpers/harness.ts";

async function refusal(p: Promise<unknown>): Promise<RefusedError> {
  const err = await p.then(() => undefined, (e) => e);
  assert.ok(err instanceof RefusedError, `expected a RefusedError, got ${err}`);
  return err;
}

Deno.test("onAuth and onExpose allow or refuse, and the client hears the hook's reason", async () => {
  const seen: string[] = [];
  await using server = await libraryServer({
    token: "hk",
    portCount: 10,
    onAuth: ({ group, addr }) => {
      seen.push(`auth ${group} ${addr.split(":")[0]}`);
      return group.startsWith("team-") || `group ${group} is not on the team list`;
    },
    onExpose: ({ group, app, port }) => {
      seen.push(`expose ${group}/${app} ${port}`);
      if (app === "db") return false;
      if (app === "boom") throw new Error("hook crashed");
    },
  });
  const addr = `127.0.0.1:${server.addr.port}`;
  await using client = asTestClient(
    await startClient({ server: addr, token: "hk", group: "team-a" }),
  );
  const outsider = await refusal(startClient({ server: addr, token: "hk", group: "stranger" }));
  assert.equal(outsider.code, "forbidden");
  assert.equal(outsider.message, "group stranger is not on the team list");
  const web = await client.expose({ name: "web", local: "127.0.0.1:9" });
  assert.ok(web.remotePort > 0);
  const db = await refusal(client.expose({ name: "db", local: "127.0.0.1:9" }));
  assert.equal(db.code, "forbidden");
  assert.equal(db.message, "refused by the server's onExpose hook");
  // A hook that throws refuses: failing closed is the safe side.
  const boom = await refusal(client.expose({ name: "boom", local: "127.0.0.1:9" }));
  assert.equal(boom.code, "forbidden");
  assert.deepEqual(server.services().map((s) => s.app), ["web"]);
  assert.deepEqual(seen, [
    "auth team-a 127.0.0.1",
    "auth stranger 127.0.0.1",
    "expose team-a/web 0",
    "expose team-a/db 0",
    "expose team-a/boom 0",
  ]);
});

Deno.test("onUserConnect refuses before any byte reaches the client; onClose sees bytes and time", async () => {
  using app = echoApp();
  const closes: CloseInfo[] = [];
  let blocked = false;
  await using server = await libraryServer({
    token: "hk",
    portCount: 10,
    onUserConnect: ({ user }) => !blocked || `user ${user} is not allowed`,
    onClose: (info) => closes.push(info),
  });
  await using client = asTestClient(
    await startClient({
      server: `127.0.0.1:${server.addr.port}`,
      token: "hk",
      group: "obs",
    }),
  );
  const tunnel = await client.expose({ name: "echo", local: app.addr });
  const data = randomBytes(123_457);
  assert.equal(await echoThrough(tunnel.remotePort, data), await sha256(data));
  const accepted = app.accepted;
  blocked = true;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.remotePort });
  await writeAll(conn, new TextEncoder().encode("let me in")).catch(() => {});
  assert.equal((await readAll(conn).catch(() => new Uint8Array())).length, 0);
  conn.close();
  assert.equal(app.accepted, accepted, "a refused user reached the app");
  assert.equal(closes.length, 1, "a refused user is not a closed connection");
  const [c] = closes;
  assert.equal(c?.group, "obs");
  assert.equal(c?.app, "echo");
  assert.equal(c?.port, tunnel.remotePort);
  assert.equal(c?.bytesIn, 123_457);
  assert.equal(c?.bytesOut, 123_457);
  assert.equal(c?.error, undefined);
  assert.match(c?.user ?? "", /^127\.0\.0\.1:\d+$/);
  assert.ok((c?.durationMs ?? -1) >= 0);
});

Deno.test("the client dispatches ready, reconnecting and closed events", async () => {
  const ports = portBlock(10).spec;
  const first = await startServer({
    bind: "127.0.0.1:0",
    token: "ev",
    ports,
    publicHost: "127.0.0.1",
  });
  const control = first.addr.port;
  const events: string[] = [];
  const client = await startClient({
    server: `127.0.0.1:${control}`,
    token: "ev",
    group: "events",
  });
  let readyAgain!: () => void;
  const again = new Promise<void>((r) => readyAgain = r);
  client.addEventListener("ready", (e) => {
    events.push(`ready ${(e as CustomEvent).detail.tunnel.name}`);
    if (events.filter((x) => x.startsWith("ready")).length === 2) readyAgain();
  });
  client.addEventListener("reconnecting", (e) => {
    const { reason, delayMs } = (e as CustomEvent).detail;
    events.push(`reconnecting ${reason.includes("shutting down")} ${delayMs > 0}`);
  });
  client.addEventListener(
    "closed",
    (e) => events.push(`closed ${(e as CustomEvent).detail.reason}`),
  );
  let second: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    await client.expose({ name: "web", local: "127.0.0.1:9" });
    await first.close(); // the client hears "shutdown" and reconnects
    second = await startServer({
      bind: `127.0.0.1:${control}`,
      token: "ev",
      ports,
      publicHost: "127.0.0.1",
    });
    await again;
    await client.close();
    assert.deepEqual(events.filter((e) => !e.startsWith("reconnecting false")), [
      "ready web",
      "reconnecting true true",
      "ready web",
      "closed undefined",
    ]);
  } finally {
    await client.close();
    await second?.close();
  }
});

Deno.test("an async onClose hook that rejects is logged, and the server carries on", async () => {
  using app = echoApp();
  let calls = 0;
  await using server = await libraryServer({
    token: "hk",
    portCount: 10,
    onClose: async () => {
      calls++;
      await Promise.resolve();
      throw new Error("the audit database is down");
    },
  });
  await using client = asTestClient(
    await startClient({
      server: `127.0.0.1:${server.addr.port}`,
      token: "hk",
      group: "audited",
    }),
  );
  const tunnel = await client.expose({ name: "echo", local: app.addr });
  for (let i = 0; i < 3; i++) {
    const data = randomBytes(1000 + i);
    assert.equal(await echoThrough(tunnel.remotePort, data), await sha256(data));
  }
  // Were the rejection unhandled, Deno would have failed this test already.
  const deadline = Date.now() + 2000;
  while (calls < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(calls, 3);
});
