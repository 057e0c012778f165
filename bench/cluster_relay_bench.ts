/**
 * The relay hop's cost: a user on a node that does not hold the group
 * (relayed over the node-to-node mux link) against a user on the node that
 * does. Two real server processes (127.0.0.2 and .3, TLS on, one Redis), a
 * real client with an echo app on the first; bulk echo throughput and
 * connect+echo latency through each node.
 *
 * `deno task bench:relay [--mib 256] [--rounds 300]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { REDIS_MISSING, startRedis } from "../tests/helpers/redis.ts";
import { nodeClient, readyOn, startNode } from "../tests/helpers/cluster_nodes.ts";
import { echoApp, portBlock, startClient } from "../tests/helpers/harness.ts";
import { makeTempFileSync } from "../tests/helpers/temp.ts";

/** A group file for the bench group with one extra line. */
function groupFileWith(server: string, token: string, local: string, extra: string): string {
  const path = makeTempFileSync({ suffix: ".yaml" });
  Deno.writeTextFileSync(
    path,
    `server: ${server}\ntoken: ${token}\ngroup: bench\nheartbeat_interval: 1\n${extra}\n` +
      `apps:\n  - name: echo\n    local: ${local}\n`,
  );
  return path;
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    mib: { type: "string", default: "256" },
    rounds: { type: "string", default: "300" },
    plain: { type: "boolean", default: false },
  },
});
const MIB = Number(values.mib);
const ROUNDS = Number(values.rounds);

if (REDIS_MISSING) {
  console.log(`skipped: ${REDIS_MISSING}`);
  Deno.exit(0);
}

/** Echoes `mib` MiB through HOST:PORT (writing and reading at once); Gbit/s one way. */
async function bulk(host: string, port: number, mib: number): Promise<number> {
  const conn = await Deno.connect({ hostname: host, port });
  conn.setNoDelay(true);
  const chunk = new Uint8Array(256 * 1024).fill(7);
  const total = mib * 1024 * 1024;
  const started = performance.now();
  const writing = (async () => {
    for (let sent = 0; sent < total; sent += chunk.length) {
      for (let off = 0; off < chunk.length;) off += await conn.write(chunk.subarray(off));
    }
    await conn.closeWrite();
  })();
  const buf = new Uint8Array(256 * 1024);
  let got = 0;
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    got += n;
  }
  await writing;
  conn.close();
  if (got !== total) throw new Error(`echoed ${got} of ${total} bytes`);
  return (total * 8) / ((performance.now() - started) / 1000) / 1e9;
}

/** Connect, send 64 bytes, read them back, close: ms per round. */
async function latency(host: string, port: number, rounds: number): Promise<number[]> {
  const out: number[] = [];
  const msg = new Uint8Array(64).fill(1);
  const buf = new Uint8Array(64);
  for (let i = 0; i < rounds; i++) {
    const started = performance.now();
    const conn = await Deno.connect({ hostname: host, port });
    conn.setNoDelay(true);
    await conn.write(msg);
    let got = 0;
    while (got < msg.length) {
      const n = await conn.read(buf.subarray(got));
      if (n === null) throw new Error("closed early");
      got += n;
    }
    conn.close();
    out.push(performance.now() - started);
  }
  return out.sort((a, b) => a - b);
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

const redis = await startRedis();
const ports = portBlock(10).spec;
const token = "bench-token";
const args = values.plain ? ["--no-tls"] : [];
const n1 = await startNode({ name: "n1", host: "127.0.0.2", store: redis.url, ports, token, args });
const n2 = await startNode({ name: "n2", host: "127.0.0.3", store: redis.url, ports, token, args });
const app = echoApp();
const client = values.plain
  ? startClient(groupFileWith(n1.control, token, app.addr, "tls: false"))
  : nodeClient(n1, { group: "bench", token, local: app.addr });
try {
  const port = await readyOn(client, "bench");
  await bulk(n2.host, port, 8); // the relay link is up, warm
  await bulk(n1.host, port, 8);
  const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  console.log(
    `load average before: ${load}; ${MIB} MiB echoed per run, ${ROUNDS} connect+echo rounds`,
  );
  for (
    const [label, host] of [["same node (n1 holds)", n1.host], [
      "relayed (via n2)",
      n2.host,
    ]] as const
  ) {
    const gbit = [await bulk(host, port, MIB), await bulk(host, port, MIB)];
    const lat = await latency(host, port, ROUNDS);
    console.log(
      `${label.padEnd(22)} bulk echo ${
        gbit.map((g) => g.toFixed(2)).join(" / ")
      } Gbit/s each way; ` +
        `connect+echo p50 ${pct(lat, 0.5).toFixed(2)} ms, p99 ${pct(lat, 0.99).toFixed(2)} ms`,
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
  app.close();
  await redis.stop();
}
