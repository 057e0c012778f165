/**
 * burrow's UDP benchmark: datagrams per second and loss, direct to a UDP
 * echo service and through burrow (the real `server.ts` and `client.ts` as
 * processes, with the permissions `deno compile` gives them, TLS on as by
 * default), for small (64 B) and large (1200 B) datagrams.
 *
 * The driver keeps a bounded window of datagrams outstanding (each carries
 * a sequence number): every echo received sends the next one, and one not
 * echoed within `LOSS_MS` counts as lost and is replaced. So the rate is
 * what the path sustains without flooding it, and loss is what it drops at
 * that rate. The echo service runs in the bench process, the same for both
 * paths. It prints a table and writes `bench-udp.json`; it waits for the
 * programs' own ready lines and stops its children on every way out.
 *
 * Run: `deno task bench:udp [--seconds N] [--window N]`.
 *
 * @module
 */

import dgram from "node:dgram";
import { parseArgs } from "node:util";
import { Child } from "./child.ts";
import { PERMISSIONS } from "../scripts/compile.ts";

const RESULTS_FILE = "bench-udp.json";
/** An outstanding datagram not echoed within this long is lost. */
const LOSS_MS = 500;
/** The whole run ends by this time whatever happens. */
const WATCHDOG_MS = 120_000;
const SIZES = [64, 1200] as const;

/** What one path did with one size. */
interface PathFigures {
  sent: number;
  received: number;
  lost: number;
  seconds: number;
  perSecond: number;
  lossPercent: number;
  /** Median round trip, in ms. */
  rttMedianMs: number;
}

function bindSocket(): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => resolve(socket));
  });
}

/** A UDP echo service on 127.0.0.1. */
async function echoService(): Promise<{ port: number; close(): void }> {
  const socket = await bindSocket();
  socket.on("message", (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address));
  return { port: socket.address().port, close: () => socket.close() };
}

/** Keeps `window` datagrams of `size` bytes outstanding to `port` for `seconds`. */
async function drive(port: number, size: number, window: number, seconds: number) {
  const socket = await bindSocket();
  const sentAt = new Map<number, number>();
  const rtts: number[] = [];
  let seq = 0;
  let sent = 0;
  let received = 0;
  let lost = 0;
  let running = true;
  const sendOne = () => {
    seq = (seq + 1) >>> 0;
    // A datagram of its own: the socket sends asynchronously, a shared buffer would change under it.
    const payload = new Uint8Array(size);
    new DataView(payload.buffer).setUint32(0, seq);
    sentAt.set(seq, performance.now());
    sent++;
    socket.send(payload, port, "127.0.0.1");
  };
  socket.on("message", (msg: Uint8Array) => {
    const n = new DataView(msg.buffer, msg.byteOffset, msg.byteLength).getUint32(0);
    const at = sentAt.get(n);
    if (at === undefined) return; // already counted as lost
    sentAt.delete(n);
    received++;
    if (rtts.length < 200_000) rtts.push(performance.now() - at);
    if (running) sendOne();
  });
  const reaper = setInterval(() => {
    const now = performance.now();
    for (const [n, at] of sentAt) {
      if (now - at < LOSS_MS) continue;
      sentAt.delete(n);
      lost++;
      if (running) sendOne();
    }
  }, 50);
  // Warm up (a flow is opened, a JIT settles), then count from zero.
  for (let i = 0; i < window; i++) sendOne();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const t0 = performance.now();
  const base = { sent, received, lost };
  rtts.length = 0;
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  running = false;
  const elapsed = (performance.now() - t0) / 1000;
  const counted = { sent: sent - base.sent, received: received - base.received };
  // The stragglers: echoed late, or lost.
  await new Promise((resolve) => setTimeout(resolve, LOSS_MS + 100));
  clearInterval(reaper);
  lost += sentAt.size;
  socket.close();
  rtts.sort((a, b) => a - b);
  const figures: PathFigures = {
    sent: counted.sent,
    received: counted.received,
    lost: lost - base.lost,
    seconds: elapsed,
    perSecond: Math.round(counted.received / elapsed),
    lossPercent: counted.sent === 0 ? 0 : (100 * (lost - base.lost)) / (counted.sent + window),
    rttMedianMs: rtts[rtts.length >> 1] ?? NaN,
  };
  return figures;
}

/** Starts server.ts and client.ts exposing the echo service as a udp app. */
async function startTunnel(echoPort: number, children: Child[]): Promise<number> {
  const token = crypto.randomUUID().replaceAll("-", "");
  const stateDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "burrow-udp-bench-" });
  try {
    const server = new Child("server", [
      ...["run", ...PERMISSIONS, "server.ts", "--bind", "127.0.0.1:0", "--token", token],
      ...["--ports", "20000-30000", "--public-host", "127.0.0.1", "--log-level", "warning"],
      ...["--state-dir", stateDir],
    ]);
    children.push(server);
    const control = Number((await server.waitLine(/^listening 127\.0\.0\.1:(\d+)$/))[1]);
    const fingerprint = (await server.waitLine(/^fingerprint (sha256:[0-9a-f]{64})$/))[1];
    const file = `${stateDir}/bench.yaml`;
    await Deno.writeTextFile(
      file,
      `server: 127.0.0.1:${control}\ntoken: ${token}\ngroup: bench\nfingerprint: ${fingerprint}\n` +
        `apps:\n  - { name: echo, type: udp, local: 127.0.0.1:${echoPort} }\n`,
    );
    const client = new Child("client", [
      "run",
      ...PERMISSIONS,
      "client.ts",
      file,
      "--log-level",
      "warning",
    ]);
    children.push(client);
    const [, port] = await client.waitLine(/^ready bench\/echo udp:\/\/127\.0\.0\.1:(\d+)$/);
    return Number(port);
  } finally {
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
  }
}

/** The machine's load, as `uptime` prints it. */
async function loadAverage(): Promise<string> {
  try {
    const out = await new Deno.Command("uptime", { stdout: "piped", stderr: "null" }).output();
    return new TextDecoder().decode(out.stdout).trim().replace(/^.*load average: /, "");
  } catch {
    return "unknown";
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "3" },
      window: { type: "string", default: "32" },
    },
    strict: true,
  });
  const seconds = Number(values.seconds);
  const window = Number(values.window);
  if (!(seconds > 0) || !Number.isInteger(window) || window < 1) {
    throw new Error("--seconds must be a positive number and --window a positive integer");
  }
  const children: Child[] = [];
  const echo = await echoService();
  const watchdog = setTimeout(() => {
    console.error("bench: watchdog fired; stopping");
    for (const c of children) c.kill();
    Deno.exit(1);
  }, WATCHDOG_MS);
  try {
    const loadBefore = await loadAverage();
    const tunnelPort = await startTunnel(echo.port, children);
    const rows: Array<{ size: number; direct: PathFigures; tunnel: PathFigures }> = [];
    for (const size of SIZES) {
      console.error(`bench: ${size} B datagrams, window ${window}, ${seconds}s per path`);
      const direct = await drive(echo.port, size, window, seconds);
      const tunnel = await drive(tunnelPort, size, window, seconds);
      rows.push({ size, direct, tunnel });
    }
    const fmt = (f: PathFigures) =>
      `${String(f.perSecond).padStart(8)}/s  loss ${f.lossPercent.toFixed(2).padStart(5)}%  rtt ${
        f.rttMedianMs.toFixed(2)
      } ms`;
    console.log(`udp datagrams per second (window ${window}, ${seconds}s each, TLS link)`);
    for (const r of rows) {
      console.log(
        `${String(r.size).padStart(5)} B  direct ${fmt(r.direct)}  |  burrow ${fmt(r.tunnel)}  ` +
          `(${(r.tunnel.perSecond / r.direct.perSecond * 100).toFixed(0)}% of direct)`,
      );
    }
    const loadAfter = await loadAverage();
    console.log(`load average before ${loadBefore}, after ${loadAfter}`);
    await Deno.writeTextFile(
      RESULTS_FILE,
      JSON.stringify({ window, seconds, lossMs: LOSS_MS, loadBefore, loadAfter, rows }, null, 2) +
        "\n",
    );
  } finally {
    clearTimeout(watchdog);
    echo.close();
    for (const c of children) c.kill();
    await Promise.all(children.map((c) => c.status));
  }
}

if (import.meta.main) await main();
