/**
 * The HTTP edge's cost, measured with `wrk` (Debian's package): requests
 * per second and latency percentiles for small kept-alive requests, straight
 * to an app, through the edge alone (routing by `Host`, header rewriting,
 * the per-app upstream pool; `dial` a plain loopback connection), and
 * through the whole tunnel (`server.ts --http` and `client.ts` with an http
 * app, TLS between them as by default), each in its own process.
 *
 * Run: `deno task bench:http [--seconds N] [--connections N] [--reps N]`.
 * Prints a table and writes `bench-http.json`. On a shared 2-core machine
 * the figures move by ±10 % from run to run: compare the ratio, not the
 * absolute numbers.
 *
 * @module
 */

import { parseArgs } from "node:util";

const WRK = "/usr/bin/wrk";
const HOST = "bench.example.test";

interface WrkFigures {
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

/** Starts `server.ts --http` and `client.ts` with an http app for `appPort`; resolves to the http port. */
async function tunnel(appPort: number): Promise<{ port: number; stop: () => Promise<void> }> {
  const root = new URL("../", import.meta.url).pathname;
  const token = crypto.randomUUID();
  const state = await Deno.makeTempDir({ prefix: "burrow-bench-http-" });
  const spawn = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...args],
      cwd: root,
      env: { BURROW_TOKEN: token },
      stdout: "piped",
      stderr: "null",
    }).spawn();
  const lines = (proc: Deno.ChildProcess) => {
    const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    return {
      reader,
      async wait(re: RegExp): Promise<RegExpMatchArray> {
        while (!re.test(text)) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`ended before ${re}: ${text}`);
          text += value;
        }
        return re.exec(text) as RegExpMatchArray;
      },
    };
  };
  const server = spawn([
    "server.ts",
    "--bind",
    "127.0.0.1:0",
    "--http",
    "127.0.0.1:0",
    "--public-host",
    "127.0.0.1",
    "--state-dir",
    state,
    "--log-level",
    "error",
  ]);
  const out = lines(server);
  const control = Number((await out.wait(/listening 127\.0\.0\.1:(\d+)/))[1]);
  const fingerprint = (await out.wait(/fingerprint (sha256:[0-9a-f]+)/))[1];
  const http = Number((await out.wait(/http http:\/\/127\.0\.0\.1:(\d+)\//))[1]);
  const file = `${state}/group.yaml`;
  await Deno.writeTextFile(
    file,
    `server: 127.0.0.1:${control}\ntoken: \${BURROW_TOKEN}\ngroup: bench\nfingerprint: ${fingerprint}\n` +
      `apps:\n  - name: app\n    type: http\n    local: 127.0.0.1:${appPort}\n    hostnames: [${HOST}]\n`,
  );
  const client = spawn(["client.ts", file, "--log-level", "error"]);
  const cout = lines(client);
  await cout.wait(/ready bench\/app /);
  return {
    port: http,
    stop: async () => {
      for (const proc of [client, server]) {
        proc.kill("SIGTERM");
        await proc.status;
      }
      await Promise.all([out.reader.cancel(), cout.reader.cancel()]);
      await Deno.remove(state, { recursive: true });
    },
  };
}

/** Starts a child of `http_edge_main.ts` and waits for its port. */
async function child(args: string[]): Promise<{ port: number; stop: () => Promise<void> }> {
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./http_edge_main.ts", import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = setTimeout(() => proc.kill("SIGKILL"), 20_000);
  while (!/listening (\d+)/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`child ${args[0]} ended before listening: ${text}`);
    text += value;
  }
  clearTimeout(deadline);
  const port = Number(/listening (\d+)/.exec(text)?.[1]);
  return {
    port,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.status;
      await reader.cancel();
    },
  };
}

function ms(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "s" ? n * 1000 : n;
}

async function wrk(port: number, seconds: number, connections: number): Promise<WrkFigures> {
  const out = await new Deno.Command(WRK, {
    args: [
      "-t1",
      `-c${connections}`,
      `-d${seconds}s`,
      "--latency",
      "-H",
      `Host: ${HOST}`,
      `http://127.0.0.1:${port}/`,
    ],
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (out.code !== 0) throw new Error(`wrk failed: ${new TextDecoder().decode(out.stderr)}`);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1]);
  const p50 = ms(/\s50%\s+(\S+)/.exec(text)?.[1] ?? "");
  const p99 = ms(/\s99%\s+(\S+)/.exec(text)?.[1] ?? "");
  const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0) +
    [...text.matchAll(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/g)]
      .flatMap((m) => m.slice(1).map(Number)).reduce((a, b) => a + b, 0);
  return { rps, p50ms: p50, p99ms: p99, errors };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

if (import.meta.main) {
  const args = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "8" },
      connections: { type: "string", default: "32" },
      reps: { type: "string", default: "3" },
    },
  });
  const seconds = Number(args.values.seconds);
  const connections = Number(args.values.connections);
  const reps = Number(args.values.reps);
  if (!(await Deno.stat(WRK).then(() => true, () => false))) {
    console.error("wrk is not installed (apt-get install wrk)");
    Deno.exit(1);
  }
  const app = await child(["app"]);
  const edge = await child(["edge", String(app.port)]);
  const full = await tunnel(app.port);
  try {
    const runs: Record<"direct" | "edge" | "tunnel", WrkFigures[]> = {
      direct: [],
      edge: [],
      tunnel: [],
    };
    for (let i = 0; i < reps; i++) {
      runs.direct.push(await wrk(app.port, seconds, connections));
      runs.edge.push(await wrk(edge.port, seconds, connections));
      runs.tunnel.push(await wrk(full.port, seconds, connections));
    }
    const summary = Object.fromEntries(
      (["direct", "edge", "tunnel"] as const).map((k) => [k, {
        rps: Math.round(median(runs[k].map((r) => r.rps))),
        p50ms: median(runs[k].map((r) => r.p50ms)),
        p99ms: median(runs[k].map((r) => r.p99ms)),
        errors: runs[k].reduce((n, r) => n + r.errors, 0),
        runs: runs[k],
      }]),
    ) as Record<"direct" | "edge" | "tunnel", WrkFigures & { runs: WrkFigures[] }>;
    console.log(`wrk -t1 -c${connections} -d${seconds}s, median of ${reps} runs, small GET`);
    console.log("path     req/s     p50 ms   p99 ms   errors");
    for (const k of ["direct", "edge", "tunnel"] as const) {
      const s = summary[k];
      console.log(
        `${k.padEnd(8)} ${String(s.rps).padStart(7)}   ${s.p50ms.toFixed(2).padStart(6)}   ${
          s.p99ms.toFixed(2).padStart(6)
        }   ${s.errors}`,
      );
    }
    console.log(
      `of the direct requests per second: edge ${
        (summary.edge.rps / summary.direct.rps).toFixed(3)
      }, tunnel ${(summary.tunnel.rps / summary.direct.rps).toFixed(3)}`,
    );
    await Deno.writeTextFile(
      "bench-http.json",
      JSON.stringify({ seconds, connections, reps, ...summary }, null, 2) + "\n",
    );
  } finally {
    await full.stop();
    await edge.stop();
    await app.stop();
  }
}
