/**
 * Where the soak's memory goes: the RSS of a bare TLS server in Deno after
 * thousands of short TLS connections, for the two servers Deno has and plain
 * TCP beside them:
 *
 * - `node-tls`: `node:tls` over `node:net`, as burrow's server listens (the
 *   one way its stalled handshakes can be dropped; see
 *   `lib/transport/tls_listener.ts`);
 * - `deno-tls`: `Deno.listenTls`;
 * - `node-net`: `node:net` without TLS.
 *
 * Each server runs in a child process and does nothing but read to the end
 * and close; the parent makes `--rounds` rounds of 1000 connections (a
 * handshake, 10 bytes, a half-close, the end), reading the child's RSS a
 * second after each round. Seen on the 2-core machine (Deno 2.9.6, 200 warm-
 * up connections, then 6 rounds): `node-tls` 66 -> 130 MiB, `node-net` 58 ->
 * 81, `deno-tls` 60 -> 63. A run of 12 rounds of a bare `node:tls` server
 * levelled off near 94 MiB (from 55) after about 6000 connections, with V8's
 * heap flat at 5 MiB: the memory is native, held below JavaScript, in Deno's
 * `node:net` and more so its `node:tls`.
 *
 * Run: `deno run -A bench/tls_memory.ts [--rounds N]`.
 *
 * @module
 */

import * as net from "node:net";
import * as tls from "node:tls";
import { parseArgs } from "node:util";
import { ephemeralIdentity } from "../lib/transport/server_identity.ts";
import { derToPem, pemCertificates } from "../lib/transport/certs.ts";
import { Child } from "./child.ts";

type Kind = "node-tls" | "deno-tls" | "node-net";
const KINDS: Kind[] = ["node-tls", "deno-tls", "node-net"];
const ROUND = 1000;
const WARM_UP = 200;

/** The child: one server of `kind`; prints its port, serves until killed. */
function serve(kind: Kind, cert: string, key: string): void {
  const drain = (s: net.Socket) => {
    s.on("data", () => {});
    s.on("error", () => {});
    s.on("end", () => s.end());
  };
  if (kind === "deno-tls") {
    const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
    console.log(listener.addr.port);
    (async () => {
      for await (const conn of listener) {
        (async () => {
          const buf = new Uint8Array(1024);
          try {
            while ((await conn.read(buf)) !== null) { /* to the end */ }
            await conn.closeWrite();
          } catch { /* the peer left */ }
          try {
            conn.close();
          } catch { /* closed */ }
        })();
      }
    })();
    return;
  }
  const context = kind === "node-tls" ? tls.createSecureContext({ cert, key }) : undefined;
  const server = net.createServer((raw) => {
    if (context === undefined) return drain(raw);
    const secured = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
    drain(secured);
    secured.on("close", () => raw.destroy());
  });
  server.listen(0, "127.0.0.1", () => console.log((server.address() as net.AddressInfo).port));
}

async function connectOnce(kind: Kind, port: number, ca: string): Promise<void> {
  const conn = kind === "node-net"
    ? await Deno.connect({ hostname: "127.0.0.1", port })
    : await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca] });
  try {
    if ("handshake" in conn) await conn.handshake();
    await conn.write(new Uint8Array(10));
    await conn.closeWrite();
    const buf = new Uint8Array(64);
    while ((await conn.read(buf)) !== null) { /* to the end */ }
  } finally {
    conn.close();
  }
}

async function measure(kind: Kind, rounds: number, cert: string, key: string, ca: string) {
  const child = new Child(kind, [
    ...["run", "-A", "bench/tls_memory.ts", "--serve", kind, `--cert=${cert}`, `--key=${key}`],
  ]);
  try {
    const port = Number((await child.waitLine(/^(\d+)$/))[1]);
    const rssMiB = () => child.memory().rssKiB / 1024;
    for (let i = 0; i < WARM_UP; i++) await connectOnce(kind, port, ca);
    const readings = [rssMiB()];
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < ROUND; i++) await connectOnce(kind, port, ca);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      readings.push(rssMiB());
    }
    return readings;
  } finally {
    await child.stop();
  }
}

async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string", default: "8" },
      serve: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
    },
    strict: true,
  });
  if (values.serve !== undefined) return serve(values.serve as Kind, values.cert!, values.key!);
  const rounds = Number(values.rounds);
  const { cert, key } = await ephemeralIdentity();
  const ca = derToPem(pemCertificates(cert).at(-1)!);
  console.log(
    `RSS of a bare server, MiB: after ${WARM_UP} connections, then after each ${ROUND} more ` +
      `(Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs)`,
  );
  for (const kind of KINDS) {
    const readings = await measure(kind, rounds, cert, key, ca);
    const growth = readings.at(-1)! - readings[0]!;
    console.log(
      `${kind.padEnd(8)} ${readings.map((r) => r.toFixed(1)).join(" -> ")} ` +
        `(${growth >= 0 ? "+" : ""}${growth.toFixed(1)} MiB over ${rounds * ROUND} connections)`,
    );
  }
}

if (import.meta.main) await main(Deno.args);
