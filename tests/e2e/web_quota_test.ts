/**
 * A group's `max_connections` (its users-file entry) with web apps, through
 * the real programs: every web request in flight counts toward the group's
 * open connections, as a TCP user does, also a request on a kept-alive
 * upstream stream the edge already holds. A request beyond the quota gets a
 * 503 page naming no internals, a TCP user beyond it is turned away, and
 * both are counted in `burrow_users_turned_away` (cause `group_quota`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { startClient } from "../helpers/harness.ts";
import { httpApp, KeepAlive, request, until } from "../helpers/http.ts";
import { makeTempDir } from "../helpers/temp.ts";
import { webReady, webServer } from "../helpers/web_server.ts";

const TOKEN = "quota-group-token-8841";
const PASSWORD = "quota-dash-pass";
const AUTH = { authorization: `Basic ${btoa(`ops:${PASSWORD}`)}` };

/** A TCP user of `port` that has sent one byte. */
async function tcpUser(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new Uint8Array([1]));
  return conn;
}

/** Whether the server closes `conn` (with no byte) within `ms`. */
async function closedSoon(conn: Deno.Conn, ms: number): Promise<boolean> {
  const buf = new Uint8Array(16);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"open">((resolve) => timer = setTimeout(() => resolve("open"), ms));
  const read = conn.read(buf).then((n) => n === null ? "closed" : "data", () => "closed");
  const got = await Promise.race([read, late]);
  clearTimeout(timer);
  return got === "closed";
}

Deno.test("web requests in flight count toward the group's max_connections: 503 beyond it, kept-alive streams included", async () => {
  const dir = await makeTempDir({ prefix: "burrow-web-quota-" });
  try {
    await Deno.writeTextFile(
      join(dir, "users.yaml"),
      `- group: busy\n  token: ${TOKEN}\n  max_connections: 1\n`,
      { mode: 0o600 },
    );
    let release: (() => void) | undefined;
    let holding = 0;
    await using app = await httpApp((req, res) => {
      req.resume();
      if (req.url === "/hold") {
        holding++;
        release = () => res.end("held");
        return;
      }
      res.writeHead(200, { "content-length": "2" });
      res.end("ok");
    });
    // The TCP app's local service accepts and holds its users.
    const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepted: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const c of held) accepted.push(c);
    })();
    await using s = await webServer(
      ["--users", join(dir, "users.yaml"), "--dashboard", "127.0.0.1:0", "--dashboard-user", "ops"],
      { BURROW_DASHBOARD_PASSWORD: PASSWORD },
    );
    const dash = await s.proc.stdout.wait(/^dashboard http:\/\/127\.0\.0\.1:(\d+)\/$/);
    const file = join(dir, "busy.yaml");
    await Deno.writeTextFile(
      file,
      `server: 127.0.0.1:${s.port}\ntoken: ${TOKEN}\ngroup: busy\napps:\n` +
        `  - name: web\n    type: http\n    local: 127.0.0.1:${app.port}\n    subdomain: busy\n` +
        `  - name: tcp\n    local: 127.0.0.1:${held.addr.port}\n`,
    );
    await using client = startClient(file);
    await webReady(client, "busy", "web");
    const tcpPort = Number((await client.stdout.wait(/^ready busy\/tcp 127\.0\.0\.1:(\d+)/))[1]);
    const get = (path = "/") => `GET ${path} HTTP/1.1\r\nHost: busy.tunnel.test\r\n\r\n`;
    try {
      // A request that ends leaves a kept-alive upstream stream at the edge.
      using keep = await KeepAlive.open(s.httpPort);
      assert.equal((await keep.send(get())).status, 200);

      // A request held in flight fills the quota: the next web request and a TCP user are turned away.
      const hold = request(s.httpPort, "busy.tunnel.test", { path: "/hold" });
      await until(() => holding === 1, "the held request reached the app");
      const beyond = await keep.send(get());
      assert.equal(beyond.status, 503, "a request beyond the quota, on a kept-alive connection");
      assert.match(beyond.body, /busy/i);
      assert.doesNotMatch(
        beyond.body,
        /max_connections|users file|127\.0\.0\.1|burrow\/|busy\/web/,
      );
      const fresh = await request(s.httpPort, "busy.tunnel.test");
      assert.equal(fresh.status, 503, "a request beyond the quota, on a new connection");
      const user = await tcpUser(tcpPort);
      assert.ok(await closedSoon(user, 5000), "a TCP user beyond the quota is turned away");
      user.close();
      assert.equal(accepted.length, 0);
      release?.();
      assert.equal((await hold).body, "held");

      // A TCP user holds the quota: a web request is turned away, even on the kept-alive stream.
      const tcp = await tcpUser(tcpPort);
      await until(() => accepted.length === 1, "the TCP user reached its app");
      assert.equal((await keep.send(get())).status, 503);
      tcp.close();
      for (const c of accepted.splice(0)) c.close();
      // Room again once it has left.
      const deadline = Date.now() + 10_000;
      let status = 0;
      let waited = 0; // 503s while the server has not yet seen the TCP user go
      while ((status = (await keep.send(get())).status) !== 200 && Date.now() < deadline) {
        if (status === 503) waited++;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(status, 200, "served again once the TCP user left");

      const metrics = await (await fetch(`http://127.0.0.1:${dash[1]}/metrics`, { headers: AUTH }))
        .text();
      const count = (app: string) =>
        Number(
          new RegExp(
            `^burrow_users_turned_away(?:_total)?\\{[^}]*app="${app}"[^}]*cause="group_quota"[^}]*\\} (\\d+)`,
            "m",
          ).exec(metrics)?.[1] ?? 0,
        );
      assert.equal(count("web"), 3 + waited, `web requests turned away:\n${metrics}`);
      assert.equal(count("tcp"), 1, "the TCP user turned away");
    } finally {
      for (const c of accepted.splice(0)) c.close();
      held.close();
      await accepting;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
