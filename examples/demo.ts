/**
 * `deno task demo`: burrow on built-in defaults, all on loopback. Starts a
 * server, a small local HTTP app and a client exposing it twice: on a
 * public port (a tcp app) and by name on the server's shared HTTP listener
 * (an http app named `web.demo.localhost`, a name browsers send to this
 * machine by themselves). It prints both URLs, fetches each once through
 * the tunnel to prove the path, and keeps running until Ctrl-C. `--once`
 * stops after the proof (used by the tests).
 *
 * @module
 */

import http from "node:http";
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
  // The shared listener for http apps, routed by name.
  web: { http: "127.0.0.1:0" },
});
const fingerprint = server.fingerprint!;
const client = await startClient({
  server: `127.0.0.1:${server.addr.port}`,
  token,
  group: "demo",
  tls: { fingerprint },
});
const tunnel = await client.expose({ name: "web", local: `127.0.0.1:${app.addr.port}` });
const site = await client.expose({
  name: "site",
  local: `127.0.0.1:${app.addr.port}`,
  web: { type: "http", hostnames: ["web.demo.localhost"] },
});

const url = `http://127.0.0.1:${tunnel.remotePort}/`;
console.log(`server        127.0.0.1:${server.addr.port}, TLS, CA ${fingerprint}`);
console.log(`local app     http://127.0.0.1:${app.addr.port}/`);
console.log(`public URL    ${url}`);
const res = await fetch(`${url}through-burrow`);
console.log(`fetched       ${res.status} ${(await res.text()).trim()}`);
const byName = site.urls[0] ?? "";
console.log(`by name       ${byName}  (open it in a browser on this machine)`);
// Browsers send *.localhost to this machine themselves; this fetch says the name in Host.
const answer = await new Promise<string>((resolve, reject) => {
  const name = new URL(byName);
  http.get({
    host: "127.0.0.1",
    port: server.httpAddr?.port,
    path: "/by-name",
    headers: { host: name.host },
  }, (res) => {
    let body = "";
    res.setEncoding("utf8");
    res.on("data", (c: string) => body += c);
    res.on("end", () => resolve(`${res.statusCode} ${body.trim()}`));
  }).on("error", reject);
});
console.log(`fetched       ${answer}`);
const [service] = server.services();
if (service) console.log(`server sees   ${service.group}/${service.app} on port ${service.port}`);

if (!once) {
  console.log("running; try the public URL in a browser or with curl. Ctrl-C stops.");
  await stopSignal();
}
await client.close();
await server.close();
await app.shutdown();
