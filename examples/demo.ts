/**
 * `deno task demo`: burrow on built-in defaults, all on loopback. Starts a
 * server, a small local HTTP app and a client exposing it, prints the public
 * URL, fetches it once through the tunnel to prove the path, and keeps
 * running until Ctrl-C. `--once` stops after the proof (used by the tests).
 *
 * @module
 */

import { setupLogging, stopSignal } from "../lib/config/cli.ts";
import { startClient, startServer } from "../mod.ts";

const once = Deno.args.includes("--once");
await setupLogging("info");

const token = crypto.randomUUID();
const app = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen: () => {} },
  (req) => new Response(`hello from the local app, you asked for ${new URL(req.url).pathname}\n`),
);
const server = await startServer({
  bind: "127.0.0.1:0",
  token,
  ports: "20000-30000",
  publicHost: "127.0.0.1",
  // TLS with a certificate authority made for this run; the client pins it.
  tls: "ephemeral",
});
const fingerprint = server.fingerprint!;
const client = await startClient({
  server: `127.0.0.1:${server.addr.port}`,
  token,
  group: "demo",
  tls: { fingerprint },
});
const tunnel = await client.expose({ name: "web", local: `127.0.0.1:${app.addr.port}` });

const url = `http://127.0.0.1:${tunnel.remotePort}/`;
console.log(`server        127.0.0.1:${server.addr.port}, TLS, CA ${fingerprint}`);
console.log(`local app     http://127.0.0.1:${app.addr.port}/`);
console.log(`public URL    ${url}`);
const res = await fetch(`${url}through-burrow`);
console.log(`fetched       ${res.status} ${(await res.text()).trim()}`);
const [service] = server.services();
if (service) console.log(`server sees   ${service.group}/${service.app} on port ${service.port}`);

if (!once) {
  console.log("running; try the public URL in a browser or with curl. Ctrl-C stops.");
  await stopSignal();
}
await client.close();
await server.close();
await app.shutdown();
