import { startClient, startServer } from "./mod.ts";
import { echoApp } from "./tests/helpers/apps.ts";
import { portBlock } from "./tests/helpers/ports.ts";

async function once(port: number): Promise<number> {
  const t = performance.now();
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  const data = new Uint8Array(1024).fill(7);
  await c.write(data);
  const buf = new Uint8Array(1024);
  let got = 0;
  while (got < 1024) { const n = await c.read(buf.subarray(got)); if (n === null) throw new Error("short"); got += n; }
  c.close();
  return performance.now() - t;
}
async function series(port: number, n = 300) {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) xs.push(await once(port));
  xs.sort((a, b) => a - b);
  const q = (p: number) => xs[Math.floor(p * (xs.length - 1))]!.toFixed(2);
  return `p50 ${q(0.5)} ms, p95 ${q(0.95)} ms, max ${q(1)} ms`;
}
const server = await startServer({ bind: "127.0.0.1:0", publicHost: "127.0.0.1", token: "t", ports: portBlock().spec, tls: false });
const dial = `127.0.0.1:${server.addr.port}`;
const e1 = echoApp(), e2 = echoApp();
const solo = await startClient({ server: dial, token: "t", group: "solo", tls: false });
const ts = await solo.expose({ name: "echo", local: e1.addr });
const r1 = await startClient({ server: dial, token: "t", group: "farm", tls: false, shared: true });
const r2 = await startClient({ server: dial, token: "t", group: "farm", tls: false, shared: true });
const t1 = await r1.expose({ name: "echo", local: e1.addr });
await r2.expose({ name: "echo", local: e2.addr });
await series(ts.remotePort, 50); await series(t1.remotePort, 50); // warm up
console.log("non-shared         ", await series(ts.remotePort));
console.log("shared, 2 replicas ", await series(t1.remotePort));
e2.close();
console.log("shared, 1 of 2 dead", await series(t1.remotePort));
await Promise.all([solo.close(), r1.close(), r2.close()]);
e1.close();
await server.close();
