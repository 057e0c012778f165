/**
 * The relay hop's cost for web apps: a request on a node that does not hold
 * the app (carried over the node-to-node link) against one on the node that
 * does. Two real server processes with `--http` (127.0.0.2 and .3, TLS
 * links, one Redis), a real client with an http app on the first; a large
 * GET's throughput, and small GETs on one kept-alive connection (p50/p99).
 *
 * `deno task bench:relay-web [--mib 64] [--rounds 500]`
 *
 * @module
 */

import http from "node:http";
import { parseArgs } from "node:util";
import { REDIS_MISSING, startRedis } from "../tests/helpers/redis.ts";
import { startNode } from "../tests/helpers/cluster_nodes.ts";
import { portBlock, startClient } from "../tests/helpers/harness.ts";
import { httpApp } from "../tests/helpers/http.ts";
import { makeTempFileSync } from "../tests/helpers/temp.ts";
import { webReady } from "../tests/helpers/web_server.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    mib: { type: "string", default: "64" },
    rounds: { type: "string", default: "500" },
  },
});
const MIB = Number(values.mib);
const ROUNDS = Number(values.rounds);
const NAME = "site.tunnel.test";

if (REDIS_MISSING) {
  console.log(`skipped: ${REDIS_MISSING}`);
  Deno.exit(0);
}

const chunk = new Uint8Array(256 * 1024).fill(7);

/** One GET of `path` through HOST:PORT by name; the bytes of its body. */
function get(agent: http.Agent | false, host: string, port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { hostname: host, port, path, headers: { host: NAME }, agent },
      (res) => {
        let n = 0;
        res.on("data", (c: Uint8Array) => n += c.length);
        res.on(
          "end",
          () => res.statusCode === 200 ? resolve(n) : reject(new Error(`${res.statusCode}`)),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

const redis = await startRedis();
const ports = portBlock(10).spec;
const token = "bench-token";
const web = (host: string) => ["--http", `${host}:0`, "--domain", "tunnel.test"];
const n1 = await startNode({
  name: "n1",
  host: "127.0.0.2",
  store: redis.url,
  ports,
  token,
  args: web("127.0.0.2"),
});
const n2 = await startNode({
  name: "n2",
  host: "127.0.0.3",
  store: redis.url,
  ports,
  token,
  args: web("127.0.0.3"),
});
const httpPort = async (n: typeof n1) =>
  Number((await n.proc.stdout.wait(/^http http:\/\/[\d.]+:(\d+)\/$/))[1]);
const app = await httpApp((req, res) => {
  if (req.url === "/big") {
    res.writeHead(200, { "content-length": String(MIB * 1024 * 1024) });
    let left = MIB * 4;
    const more = () => {
      while (left > 0) {
        left--;
        if (!res.write(chunk)) return void res.once("drain", more);
      }
      res.end();
    };
    return more();
  }
  res.writeHead(200, { "content-length": "64" });
  res.end("x".repeat(64));
});
const file = makeTempFileSync({ suffix: ".yaml" });
Deno.writeTextFileSync(
  file,
  `server: ${n1.control}\ntoken: ${token}\ngroup: bench\nheartbeat_interval: 1\napps:\n` +
    `  - name: web\n    type: http\n    local: 127.0.0.1:${app.port}\n    subdomain: site\n`,
);
const client = startClient(file);
try {
  await webReady(client, "bench", "web");
  const targets = [["same node (n1 holds)", n1.host, await httpPort(n1)], [
    "relayed (via n2)",
    n2.host,
    await httpPort(n2),
  ]] as const;
  for (const [, host, port] of targets) {
    for (let tries = 0;; tries++) { // n2 routes the name once its view has the claim
      try {
        await get(false, host, port, "/small");
        break;
      } catch (err) {
        if (tries > 100) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
  const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  console.log(`load average before: ${load}; GET of ${MIB} MiB, ${ROUNDS} small GETs kept alive`);
  for (const [label, host, port] of targets) {
    const mbit: number[] = [];
    for (let i = 0; i < 2; i++) {
      const started = performance.now();
      const n = await get(false, host, port, "/big");
      mbit.push((n * 8) / ((performance.now() - started) / 1000) / 1e9);
    }
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const lat: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const started = performance.now();
      await get(agent, host, port, "/small");
      lat.push(performance.now() - started);
    }
    agent.destroy();
    lat.sort((a, b) => a - b);
    console.log(
      `${label.padEnd(22)} GET ${mbit.map((g) => g.toFixed(2)).join(" / ")} Gbit/s; ` +
        `small GET p50 ${pct(lat, 0.5).toFixed(2)} ms, p99 ${pct(lat, 0.99).toFixed(2)} ms`,
    );
  }
} catch (err) {
  console.log(`failed: ${err}`);
  for (const n of [n1, n2]) {
    console.log(`--- ${n.name}\n${n.proc.stderr.all.slice(-15).join("\n")}`);
  }
} finally {
  await client.stop();
  await n1.proc.stop();
  await n2.proc.stop();
  await app.close();
  await redis.stop();
}
