/**
 * Pebble, Let's Encrypt's ACME test server (Debian's `pebble` package), run
 * for one test: its own config on free ports, a TLS certificate for its
 * directory signed by a fresh test CA, `pebble-challtestsrv` as its DNS
 * server (every name resolves to 127.0.0.1), and HTTP-01 validation sent to
 * the port the test's edge listens on.
 *
 * @module
 */

import dgram from "node:dgram";
import { makeTempDir } from "./temp.ts";
import https from "node:https";
import { join } from "node:path";
import { Lines } from "./harness.ts";
import { testCa } from "./http.ts";

export const PEBBLE = "/usr/bin/pebble";
export const CHALLTESTSRV = "/usr/bin/pebble-challtestsrv";

/** Why Pebble tests cannot run here, if they cannot. */
export const pebbleMissing: string | undefined = await Promise.all(
  [PEBBLE, CHALLTESTSRV].map((p) => Deno.stat(p)),
).then(() => undefined, () => "pebble is not installed; apt-get install pebble");

/** A running Pebble. */
export interface Pebble extends AsyncDisposable {
  /** The ACME directory URL. */
  directory: string;
  /** The CA of the directory's own TLS certificate (`acme.ca`). */
  tlsCa: string;
  /** Pebble's root CA for the certificates it issues (fetched from its management API). */
  issuingRoot(): Promise<string>;
  log: Lines;
}

/** A port free on 127.0.0.1 for both TCP and UDP (a DNS server needs both). */
async function freeDnsPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = tcp.addr.port;
    const udp = dgram.createSocket("udp4");
    const free = await new Promise<boolean>((resolve) => {
      udp.once("error", () => resolve(false));
      udp.bind(port, "127.0.0.1", () => resolve(true));
    });
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    tcp.close();
    if (free) return port;
  }
  throw new Error("no port free for both TCP and UDP");
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/**
 * Starts Pebble validating HTTP-01 on `httpPort`, issuing certificates valid
 * for `validitySeconds`.
 */
export async function startPebble(httpPort: number, validitySeconds = 3600): Promise<Pebble> {
  const dir = await makeTempDir({ prefix: "burrow-pebble-" });
  const ca = await testCa("pebble directory test CA");
  // Pebble's directory is dialled as 127.0.0.1.
  const { cert, key } = await ca.issueFor([{ type: "ip", value: "127.0.0.1" }]);
  await Deno.writeTextFile(join(dir, "cert.pem"), cert);
  await Deno.writeTextFile(join(dir, "key.pem"), key);
  const listen = freePort();
  const management = freePort();
  const dns = await freeDnsPort();
  await Deno.writeTextFile(
    join(dir, "pebble.json"),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${listen}`,
        managementListenAddress: `127.0.0.1:${management}`,
        certificate: join(dir, "cert.pem"),
        privateKey: join(dir, "key.pem"),
        httpPort,
        tlsPort: freePort(),
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
        certificateValidityPeriod: validitySeconds,
      },
    }),
  );
  const challtest = new Deno.Command(CHALLTESTSRV, {
    args: [
      "-dns01",
      `127.0.0.1:${dns}`,
      "-http01",
      "",
      "-https01",
      "",
      "-tlsalpn01",
      "",
      "-management",
      `127.0.0.1:${freePort()}`,
      "-defaultIPv4",
      "127.0.0.1",
      "-defaultIPv6",
      "",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const challLog = new Lines(challtest.stdout);
  const pebble = new Deno.Command(PEBBLE, {
    args: ["-config", join(dir, "pebble.json"), "-dnsserver", `127.0.0.1:${dns}`, "-strict=false"],
    env: { PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const log = new Lines(pebble.stdout);
  const stop = async () => {
    for (const child of [pebble, challtest]) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
    }
    await Promise.all([pebble.stderr.cancel(), challtest.stderr.cancel()]);
    await Promise.all([log.done, challLog.done]);
    await Deno.remove(dir, { recursive: true });
  };
  try {
    await challLog.wait(/Starting challenge servers/, 15_000);
    await log.wait(/ACME directory available/, 15_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    directory: `https://127.0.0.1:${listen}/dir`,
    tlsCa: ca.caPem,
    log,
    issuingRoot: () => get(`https://127.0.0.1:${management}/roots/0`, ca.caPem),
    [Symbol.asyncDispose]: stop,
  };
}

function get(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    https.get(url, { ca, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => body += c);
      res.on("end", () => resolve(body));
    }).on("error", reject);
  });
}
