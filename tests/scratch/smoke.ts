import { startRedis } from "/work/wt/cluster/tests/helpers/redis.ts";
import { nodeClient, readyOn, startNode } from "/work/wt/cluster/tests/helpers/cluster_nodes.ts";
import { echoApp, echoThrough, portBlock, randomBytes, sha256 } from "/work/wt/cluster/tests/helpers/harness.ts";
const redis = await startRedis();
const ports = portBlock().spec;
const a = await startNode({ name: "a", host: "127.0.0.2", store: redis.url, ports, token: "tok" });
const b = await startNode({ name: "b", host: "127.0.0.3", store: redis.url, ports, token: "tok" });
const app = echoApp();
const client = nodeClient(a, { group: "lab", token: "tok", local: app.addr });
try {
  const port = await readyOn(client, "lab");
  console.log("ready port", port);
  const data = randomBytes(1 << 20);
  const want = await sha256(data);
  // via b
  await new Promise(r => setTimeout(r, 1000));
  const conn = await Deno.connect({ hostname: "127.0.0.3", port });
  const w = (async () => { let o = 0; while (o < data.length) o += await conn.write(data.subarray(o)); await conn.closeWrite(); })();
  const buf = new Uint8Array(data.length); let got = 0;
  while (true) { const n = await conn.read(buf.subarray(got)); if (n === null) break; got += n; if (got === buf.length) break; }
  await w; conn.close();
  console.log("via b", got, (await sha256(buf)) === want);
} catch (e) { console.log("ERR", e); }
finally {
  console.log("A stderr", a.proc.stderr.text.split("\n").filter(l => /cluster|relay/.test(l)).slice(-15).join("\n"));
  console.log("B stderr", b.proc.stderr.text.split("\n").filter(l => /cluster|relay/.test(l)).slice(-15).join("\n"));
  await client.stop(); await a.proc.stop(); await b.proc.stop(); app.close(); await redis.stop();
}
