/**
 * burrow's tunnel benchmark. It starts the real programs, `server.ts` and
 * `client.ts`, as separate processes (so their memory can be read from
 * /proc), exposes a sink's echo, discard and source services through them,
 * and measures each against a direct loopback connection to the same sink:
 *
 * 1. bulk throughput both ways (upload: user to app, download: app to user),
 * 2. connect-to-first-byte latency over sequential short connections,
 * 3. many concurrent held connections, with the server's and the client's
 *    resident memory before and while they are held.
 *
 * It prints a table (direct, tunnel, ratio, target, pass or fail) and writes
 * every figure to `bench-results.json`. It waits for the programs' own ready
 * lines, never sleeps, bounds every step, ends itself after `WATCHDOG_MS`,
 * and stops its children on every way out. It exits 0 when the run
 * completed, whatever the targets say, and 1 when the run itself failed.
 *
 * Run: `deno task bench [--quick] [--sink process|inline] [--mib N]
 * [--reps N] [--latency-conns N] [--held-conns N] [--open-concurrency N]`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Child, otherCores, processCpu, readProc, stealSeconds } from "./child.ts";
import { bulk, download, hold, latency, upload } from "./phases.ts";
import { startup } from "./startup.ts";
import { type Figures, printReport, resultsJson, type Snapshot } from "./report.ts";
import { type SinkPorts, startSink } from "./sink.ts";

const RESULTS_FILE = "bench-results.json";
/** The whole run ends by this time whatever happens; a normal run takes well under a minute. */
const WATCHDOG_MS = 170_000;
/** Public ports are drawn from here, outside the kernel's ephemeral range. */
const PUBLIC_PORTS = { from: 20000, to: 30000, block: 16 };

/** How one run is shaped; see `parseSettings` for the defaults. */
interface Settings {
  sink: "process" | "inline";
  mib: number;
  reps: number;
  latencyConns: number;
  heldConns: number;
  openConcurrency: number;
}

function parseSettings(args: string[]): Settings {
  const { values } = parseArgs({
    args,
    options: {
      sink: { type: "string", default: "process" },
      mib: { type: "string" },
      reps: { type: "string" },
      "latency-conns": { type: "string" },
      "held-conns": { type: "string" },
      "open-concurrency": { type: "string" },
      quick: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.sink !== "process" && values.sink !== "inline") {
    throw new Error(`--sink must be "process" or "inline", got "${values.sink}"`);
  }
  const int = (flag: keyof typeof values, fallback: number) => {
    const text = values[flag];
    if (typeof text !== "string") return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a positive integer`);
    return n;
  };
  const quick = values.quick;
  return {
    sink: values.sink,
    mib: int("mib", quick ? 64 : 512),
    reps: int("reps", quick ? 1 : 7),
    latencyConns: int("latency-conns", quick ? 200 : 1000),
    heldConns: int("held-conns", quick ? 200 : 1000),
    openConcurrency: int("open-concurrency", 100),
  };
}

// ---- setup ----------------------------------------------------------------

/** A random block of public ports inside PUBLIC_PORTS, clear of the ephemeral range. */
function pickPortBlock(): string {
  const [low = 0, high = 0] = readProc("/proc/sys/net/ipv4/ip_local_port_range").trim()
    .split(/\s+/).map(Number);
  const { from, to, block } = PUBLIC_PORTS;
  const starts: number[] = [];
  for (let p = from; p + block - 1 <= to; p += block) {
    if (p + block - 1 < low || p > high) starts.push(p);
  }
  if (starts.length === 0) {
    throw new Error(`ports ${from}-${to} all lie in the ephemeral range ${low}-${high}`);
  }
  const start = starts[Math.floor(Math.random() * starts.length)]!;
  return `${start}-${start + block - 1}`;
}

interface Sink {
  ports: SinkPorts;
  /** Set when the sink runs as its own process. */
  child?: Child;
  close(): void;
}

async function startSinkFor(s: Settings, children: Child[]): Promise<Sink> {
  if (s.sink === "inline") {
    const sink = startSink();
    return { ports: sink.ports, close: () => sink.close() };
  }
  const child = new Child("sink", ["run", "--allow-net=127.0.0.1", "bench/sink.ts"], true);
  children.push(child);
  const [, echo, discard, source] = await child.waitLine(
    /^sink echo=(\d+) discard=(\d+) source=(\d+)$/,
  );
  const ports = { echo: Number(echo), discard: Number(discard), source: Number(source) };
  return { ports, child, close: () => {} };
}

interface Tunnel {
  server: Child;
  client: Child;
  control: number;
  token: string;
  /** The CA the client pins; undefined in plaintext. */
  fingerprint: string | undefined;
  /** Public port of each sink service through the tunnel. */
  ports: SinkPorts;
}

/**
 * Starts server.ts, then client.ts with a group exposing each sink service:
 * with TLS (a CA kept in `stateDir`, pinned by the client) or in plaintext.
 */
async function startTunnel(
  sink: SinkPorts,
  children: Child[],
  tls: boolean,
  stateDir: string,
): Promise<Tunnel> {
  const token = crypto.randomUUID().replaceAll("-", "");
  const server = new Child("server", [
    ...["run", "-A", "server.ts", "--bind", "127.0.0.1:0", "--token", token],
    ...["--ports", pickPortBlock(), "--public-host", "127.0.0.1", "--log-level", "warning"],
    ...(tls ? ["--state-dir", stateDir] : ["--no-tls"]),
  ]);
  children.push(server);
  const control = Number((await server.waitLine(/^listening 127\.0\.0\.1:(\d+)$/))[1]);
  const fingerprint = tls
    ? (await server.waitLine(/^fingerprint (sha256:[0-9a-f]{64})$/))[1]
    : undefined;
  // The group file lives only until the client has read it.
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "burrow-bench-" });
  try {
    const file = `${dir}/bench.yaml`;
    const apps = Object.entries(sink).map(([name, port]) =>
      `  - name: ${name}\n    local: 127.0.0.1:${port}\n`
    );
    const yaml = `server: 127.0.0.1:${control}\ntoken: ${token}\ngroup: bench\n` +
      (fingerprint === undefined ? "tls: false\n" : `fingerprint: ${fingerprint}\n`) + "apps:\n";
    await Deno.writeTextFile(file, yaml + apps.join(""));
    const client = new Child("client", ["run", "-A", "client.ts", file, "--log-level", "warning"]);
    children.push(client);
    const ports: Partial<SinkPorts> = {};
    for (const _ of Object.keys(sink)) {
      const [, app, port] = await client.waitLine(
        /^ready bench\/(echo|discard|source) 127\.0\.0\.1:(\d+)$/,
      );
      ports[app as keyof SinkPorts] = Number(port);
    }
    return { server, client, control, token, fingerprint, ports: ports as SinkPorts };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ---- the run ---------------------------------------------------------------

function log(line: string): void {
  console.error(`bench: ${line}`);
}

/** Runs the three phases and gathers every figure. */
async function measure(s: Settings, sink: Sink, tunnel: Tunnel): Promise<Figures> {
  const { server, client } = tunnel;
  const watched = [server, client, ...(sink.child ? [sink.child] : [])];
  const snapshot = (): Snapshot => Object.fromEntries(watched.map((c) => [c.name, c.memory()]));
  const own = new Set([Deno.pid, ...watched.map((c) => c.pid)]);
  const t0 = performance.now();
  const others0 = processCpu(own);
  const steal0 = stealSeconds();
  const start = snapshot();
  log(`bulk upload: ${s.reps} x ${s.mib} MiB per path`);
  const upPaths = { direct: sink.ports.discard, tunnel: tunnel.ports.discard };
  const up = await bulk(upload, upPaths, { mib: s.mib, reps: s.reps, watched });
  log(`bulk download: ${s.reps} x ${s.mib} MiB per path`);
  const downPaths = { direct: sink.ports.source, tunnel: tunnel.ports.source };
  const down = await bulk(download, downPaths, { mib: s.mib, reps: s.reps, watched });
  log(`latency: ${s.latencyConns} sequential connections per path`);
  const echo = { direct: sink.ports.echo, tunnel: tunnel.ports.echo };
  const lat = await latency(echo, s.latencyConns, [server, client]);
  log(`held: ${s.heldConns} concurrent connections per path`);
  const beforeHeld = snapshot();
  let heldDirectMemory: Snapshot = {};
  let heldTunnelMemory: Snapshot = {};
  const held = (port: number, whileHeld: () => void) =>
    hold(port, s.heldConns, s.openConcurrency, whileHeld);
  const heldDirect = await held(echo.direct, () => heldDirectMemory = snapshot());
  const heldTunnel = await held(echo.tunnel, () => heldTunnelMemory = snapshot());
  const afterRelease = snapshot();
  const seconds = (performance.now() - t0) / 1000;
  return {
    up,
    down,
    latency: lat,
    heldDirect,
    heldTunnel,
    heldConns: s.heldConns,
    memory: {
      start,
      beforeHeld,
      heldDirect: heldDirectMemory,
      heldTunnel: heldTunnelMemory,
      afterRelease,
    },
    seconds,
    otherCores: otherCores(others0, processCpu(own), seconds),
    stealCores: (stealSeconds() - steal0) / seconds,
  };
}

async function denoVersion(): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args: ["--version"], stdout: "piped" })
    .output();
  return new TextDecoder().decode(out.stdout).trim();
}

function sinkNote(s: Settings): string {
  return s.sink === "process"
    ? "the sink is its own Deno process (like a real app) and the same for both paths; " +
      "the tunnel path keeps 4 processes busy (bench, server, client, sink), the direct path 2"
    : "the sink runs inside the bench process (driver and app share one event loop) " +
      "and is the same for both paths";
}

/** Measures, prints, writes the JSON. */
async function run(s: Settings, children: Child[], onSink: (sink: Sink) => void): Promise<void> {
  const version = await denoVersion();
  const sink = await startSinkFor(s, children);
  onSink(sink);
  const stateDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "burrow-bench-state-" });
  // The same phases with TLS (the default) and in plaintext, one after the other.
  const results: Array<{ mode: "tls" | "plaintext"; figures: Figures }> = [];
  let boot: Awaited<ReturnType<typeof startup>> | undefined;
  try {
    for (const mode of ["tls", "plaintext"] as const) {
      log(`--- ${mode === "tls" ? "TLS" : "plaintext (--no-tls)"} ---`);
      const own: Child[] = [];
      const tunnel = await startTunnel(sink.ports, own, mode === "tls", stateDir);
      children.push(...own);
      try {
        results.push({ mode, figures: await measure(s, sink, tunnel) });
        if (mode === "tls") {
          log("start-up: 5 client launches to their first ready line");
          boot = await startup(tunnel.control, tunnel.token, sink.ports.echo, tunnel.fingerprint);
        }
      } finally {
        await Promise.all(own.map((c) => c.stop()));
      }
    }
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
  const date = new Date().toISOString();
  const cpus = navigator.hardwareConcurrency;
  for (const { mode, figures } of results) {
    printReport(figures, [
      `\nburrow tunnel benchmark (${
        mode === "tls" ? "TLS, the default" : "plaintext, --no-tls"
      }), ${date}`,
      `${version.split("\n")[0]}; ${cpus} CPUs; load average ${readProc("/proc/loadavg").trim()}`,
      sinkNote(s),
    ]);
  }
  printSideBySide(results);
  if (boot === undefined) throw new Error("no start-up figures");
  console.log(
    `client start-up, launch to first ready: median ${boot.medianMs.toFixed(0)} ms ` +
      `(runs: ${boot.readyMs.map((ms) => ms.toFixed(0)).join(", ")}); ` +
      `idle RSS ${boot.idleRssMiB.toFixed(1)} MiB; ${boot.how}`,
  );
  const meta = {
    date,
    deno: { versionOutput: version, ...Deno.version },
    host: {
      cpus,
      kernel: readProc("/proc/sys/kernel/osrelease").trim(),
      loadavg: readProc("/proc/loadavg").trim(),
    },
    settings: s,
    sink: sinkNote(s),
    startup: boot,
  };
  const json = Object.fromEntries(
    results.map(({ mode, figures }) => [mode, resultsJson(figures, meta)]),
  );
  await Deno.writeTextFile(RESULTS_FILE, JSON.stringify(json, null, 2) + "\n");
  console.log(`wrote ${RESULTS_FILE}`);
}

/** TLS and plaintext medians in one table. */
function printSideBySide(results: Array<{ mode: string; figures: Figures }>): void {
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;
  const pct = (sorted: number[], q: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  const row = (f: Figures) => [
    median(f.up.tunnel).toFixed(0),
    median(f.down.tunnel).toFixed(0),
    (pct(f.latency.tunnel, 0.5) * 1000).toFixed(0),
    (pct(f.latency.tunnel, 0.99) * 1000).toFixed(0),
  ];
  console.log("\nTLS and plaintext side by side (tunnel path, medians):");
  console.log("mode        upload MiB/s  download MiB/s  connect+first byte p50 us  p99 us");
  for (const { mode, figures } of results) {
    const [up, down, p50, p99] = row(figures);
    console.log(
      `${mode.padEnd(12)}${up!.padStart(12)}  ${down!.padStart(14)}  ${p50!.padStart(25)}  ${
        p99!.padStart(6)
      }`,
    );
  }
}

async function main(args: string[]): Promise<number> {
  const settings = parseSettings(args);
  const children: Child[] = [];
  let sink: Sink | undefined;
  const abort = (why: string) => {
    console.error(`bench: ${why}; killing ${children.map((c) => c.name).join(", ") || "nothing"}`);
    for (const c of children) c.kill();
    Deno.exit(1);
  };
  const watchdog = setTimeout(
    () => abort(`still running after ${WATCHDOG_MS / 1000}s`),
    WATCHDOG_MS,
  );
  const onSignal = () => abort("interrupted");
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    await run(settings, children, (s) => sink = s);
    return 0;
  } catch (err) {
    const text = err instanceof Error ? err.stack ?? err.message : String(err);
    console.error(`bench failed: ${text}`);
    for (const c of children) {
      const tail = c.stderrTail();
      if (tail && !text.includes(tail)) console.error(tail);
    }
    return 1;
  } finally {
    sink?.close();
    await Promise.all(children.map((c) => c.stop()));
    clearTimeout(watchdog);
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
