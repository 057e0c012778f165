/**
 * Benchmark of the mux transport (lib/transport/mux/) against raw TCP, in a
 * pair of Deno processes on loopback: this one and a child it spawns.
 *
 * ```sh
 * deno run -A bench/mux_bench.ts [--seconds=1.5] [--pairs=7]
 * ```
 *
 * Phases:
 * - bulk: one stream's throughput, against one raw TCP connection moving
 *   bytes the same way (both with 256 KiB writes; the child reads and
 *   discards, then answers with the count it saw);
 * - requests: small request/response exchanges per second, each on a new
 *   stream (open, 64-byte request, FIN, 64-byte answer, FIN), at 1, 10 and
 *   100 at once, with the writes per exchange (the coalescing), against a
 *   new raw TCP connection per exchange;
 * - latency: 100-byte round trips on a stream and of a datagram, idle and
 *   while another stream moves bulk data the same way;
 * - idle: memory per open idle stream, 1000 of them, on each side (heap and
 *   array buffers after a full GC, and RSS).
 *
 * `--mux=JSON` passes session options to both sides, for tuning runs.
 *
 * It runs itself again with `--v8-flags=--expose-gc` so that memory figures
 * are taken after a collection.
 *
 * @module
 */

import {
  MUX_HEADROOM,
  MuxSession,
  type MuxSessionOptions,
  type MuxStream,
} from "../lib/transport/mux/mod.ts";

const KiB = 1024;
const CHUNK = 256 * KiB;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const gc = (globalThis as { gc?: () => void }).gc;
/** Session options for both sides, for experiments: `--mux='{"chunk":131072}'`. */
const tuning: Omit<MuxSessionOptions, "role"> = JSON.parse(
  Deno.args.find((a) => a.startsWith("--mux="))?.slice(6) ?? "{}",
);

interface Memory {
  heap: number;
  buffers: number;
  rss: number;
}

/** CPU seconds (user + system) a process has used, from /proc (ticks of 1/100 s). */
function cpuSeconds(pid: number | "self"): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function memory(): Memory {
  gc?.();
  gc?.();
  const m = Deno.memoryUsage();
  return { heap: m.heapUsed, buffers: m.external, rss: m.rss };
}

async function writeAll(
  w: { write(p: Uint8Array): Promise<number> },
  p: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < p.length) off += await w.write(off === 0 ? p : p.subarray(off));
}

async function readToEnd(
  r: { read(p: Uint8Array): Promise<number | null> },
  buf: Uint8Array,
): Promise<number> {
  let total = 0;
  while (true) {
    const n = await r.read(buf);
    if (n === null) return total;
    total += n;
  }
}

function countBytes(n: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

// ---- the child: raw and mux servers ----

async function child(): Promise<void> {
  const raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const mux = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(`ready raw=${raw.addr.port} mux=${mux.addr.port}`);
  const serveRaw = async () => {
    for await (const conn of raw) {
      conn.setNoDelay(true);
      (async () => {
        const buf = new Uint8Array(CHUNK);
        const first = new Uint8Array(1);
        if (await conn.read(first) === null) return;
        if (first[0] === 0x64) { // "d": discard, then the count
          const n = await readToEnd(conn, buf);
          await writeAll(conn, countBytes(n));
        } else { // echo
          while (true) {
            const n = await conn.read(buf);
            if (n === null) break;
            await writeAll(conn, buf.subarray(0, n));
          }
        }
        await conn.closeWrite().catch(() => {});
      })().catch(() => {}).finally(() => conn.close());
    }
  };
  const serveMux = async () => {
    for await (const conn of mux) {
      conn.setNoDelay(true);
      const session = new MuxSession(conn, { ...tuning, role: "server" });
      (async () => {
        for await (const stream of session.incoming()) handle(stream).catch(() => {});
      })();
      (async () => {
        for await (const d of session.datagrams()) session.sendDatagram(d.flowId, d.payload);
      })();
    }
  };
  let held: MuxStream[] = [];
  const handle = async (stream: MuxStream) => {
    const kind = decoder.decode(stream.header);
    if (kind === "discard") {
      const n = await readToEnd(stream, new Uint8Array(CHUNK));
      await writeAll(stream, countBytes(n));
      await stream.closeWrite();
      stream.close();
    } else if (kind === "echo") {
      const buf = new Uint8Array(4 * KiB);
      while (true) {
        const n = await stream.read(buf);
        if (n === null) break;
        await writeAll(stream, buf.subarray(0, n));
      }
      await stream.closeWrite();
      stream.close();
    } else if (kind === "hold") {
      held.push(stream);
    } else if (kind === "mem") {
      await writeAll(stream, encoder.encode(JSON.stringify(memory())));
      await stream.closeWrite();
      stream.close();
    } else if (kind === "release") {
      for (const s of held) s.close();
      held = [];
      await stream.closeWrite();
      stream.close();
    }
  };
  await Promise.all([serveRaw(), serveMux()]);
}

// ---- the parent: the phases ----

async function connect(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  return conn;
}

async function rawBulk(port: number, seconds: number): Promise<{ gbps: number; bytes: number }> {
  const conn = await connect(port);
  const chunk = new Uint8Array(CHUNK).fill(7);
  await writeAll(conn, encoder.encode("d"));
  const started = performance.now();
  let sent = 0;
  while (performance.now() - started < seconds * 1000) {
    await writeAll(conn, chunk);
    sent += chunk.length;
  }
  await conn.closeWrite();
  const reply = new Uint8Array(8);
  let got = 0;
  while (got < 8) got += (await conn.read(reply.subarray(got))) ?? Infinity;
  const elapsed = (performance.now() - started) / 1000;
  conn.close();
  const counted = Number(new DataView(reply.buffer).getBigUint64(0));
  if (counted !== sent) throw new Error(`raw: sent ${sent}, the child counted ${counted}`);
  return { gbps: (sent * 8) / elapsed / 1e9, bytes: sent };
}

async function muxBulk(
  session: MuxSession,
  seconds: number,
  headroom: boolean,
): Promise<{ gbps: number; bytes: number }> {
  const stream = session.openStream(encoder.encode("discard"));
  const frame = new Uint8Array(MUX_HEADROOM + CHUNK).fill(7);
  const chunk = frame.subarray(MUX_HEADROOM);
  const started = performance.now();
  let sent = 0;
  while (performance.now() - started < seconds * 1000) {
    if (headroom) await stream.writeWithHeadroom(frame);
    else await writeAll(stream, chunk);
    sent += chunk.length;
  }
  await stream.closeWrite();
  const reply = new Uint8Array(8);
  let got = 0;
  while (got < 8) got += (await stream.read(reply.subarray(got))) ?? Infinity;
  const elapsed = (performance.now() - started) / 1000;
  stream.close();
  const counted = Number(new DataView(reply.buffer).getBigUint64(0));
  if (counted !== sent) throw new Error(`mux: sent ${sent}, the child counted ${counted}`);
  return { gbps: (sent * 8) / elapsed / 1e9, bytes: sent };
}

const REQUEST = new Uint8Array(64).fill(0x71);

async function exchanges(
  concurrency: number,
  seconds: number,
  one: () => Promise<void>,
): Promise<number> {
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < deadline) {
      await one();
      done++;
    }
  }));
  return done / ((performance.now() - started) / 1000);
}

async function muxExchange(session: MuxSession): Promise<void> {
  const s = session.openStream(encoder.encode("echo"));
  await writeAll(s, REQUEST);
  await s.closeWrite();
  const n = await readToEnd(s, new Uint8Array(256));
  s.close();
  if (n !== REQUEST.length) throw new Error(`mux exchange: got ${n} bytes back`);
}

async function rawExchange(port: number): Promise<void> {
  const conn = await connect(port);
  try {
    await writeAll(conn, encoder.encode("e"));
    await writeAll(conn, REQUEST);
    await conn.closeWrite();
    const n = await readToEnd(conn, new Uint8Array(256));
    if (n !== REQUEST.length) throw new Error(`raw exchange: got ${n} bytes back`);
  } finally {
    conn.close();
  }
}

/** Round trips of a 100-byte echo on one stream and of a datagram, `count` of each. */
async function roundTrips(
  session: MuxSession,
  count: number,
): Promise<{ stream: number[]; datagram: number[] }> {
  const s = session.openStream(encoder.encode("echo"));
  const buf = new Uint8Array(100);
  const stream: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await writeAll(s, buf);
    let got = 0;
    while (got < 100) got += (await s.read(buf.subarray(got))) ?? Infinity;
    stream.push(performance.now() - started);
  }
  await s.closeWrite();
  await readToEnd(s, buf);
  s.close();
  const datagram: number[] = [];
  const payload = new Uint8Array(100);
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    session.sendDatagram(i, payload);
    while (true) {
      const d = await session.receiveDatagram();
      if (d === null) throw new Error("the session ended");
      if (d.flowId === i) break; // an earlier one, late
    }
    datagram.push(performance.now() - started);
  }
  return { stream, datagram };
}

async function latencyPhase(session: MuxSession): Promise<string[]> {
  const q = (xs: number[], p: number) =>
    [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))]!;
  const show = (xs: number[]) =>
    `p50 ${q(xs, 0.5).toFixed(2)} ms, p99 ${q(xs, 0.99).toFixed(2)} ms`;
  const idle = await roundTrips(session, 200);
  const bulk = session.openStream(encoder.encode("discard"));
  const chunk = new Uint8Array(CHUNK);
  let sending = true;
  const pushing = (async () => {
    while (sending) await writeAll(bulk, chunk);
    await bulk.closeWrite();
    await readToEnd(bulk, new Uint8Array(16));
    bulk.close();
  })();
  const loaded = await roundTrips(session, 200);
  sending = false;
  await pushing;
  return [
    "latency: 100-byte round trips on a stream, and of a datagram, 200 each",
    `  idle          stream ${show(idle.stream)};  datagram ${show(idle.datagram)}`,
    `  beside bulk   stream ${show(loaded.stream)};  datagram ${show(loaded.datagram)}`,
  ];
}

async function childMemory(session: MuxSession): Promise<Memory> {
  const s = session.openStream(encoder.encode("mem"));
  await s.closeWrite();
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(4096);
  while (true) {
    const n = await s.read(buf);
    if (n === null) break;
    parts.push(buf.slice(0, n));
  }
  s.close();
  return JSON.parse(decoder.decode(new Uint8Array(parts.flatMap((p) => [...p]))));
}

async function idlePhase(session: MuxSession, count: number): Promise<string[]> {
  const beforeParent = memory();
  const beforeChild = await childMemory(session);
  const held: MuxStream[] = [];
  for (let i = 0; i < count; i++) held.push(session.openStream(encoder.encode("hold")));
  await session.ping(); // every OPEN has arrived
  while (session.stats.streams < count) await session.ping();
  const afterParent = memory();
  const afterChild = await childMemory(session);
  for (const s of held) s.close();
  const release = session.openStream(encoder.encode("release"));
  await release.closeWrite();
  await readToEnd(release, new Uint8Array(16));
  release.close();
  const per = (a: Memory, b: Memory) => ({
    heap: (b.heap - a.heap) / count / KiB,
    buffers: (b.buffers - a.buffers) / count / KiB,
    rss: (b.rss - a.rss) / count / KiB,
  });
  const opener = per(beforeParent, afterParent);
  const acceptor = per(beforeChild, afterChild);
  const line = (who: string, m: { heap: number; buffers: number; rss: number }) =>
    `  ${who.padEnd(9)} heap ${m.heap.toFixed(2)} KiB + buffers ${m.buffers.toFixed(2)} KiB` +
    ` (RSS ${m.rss.toFixed(2)} KiB)`;
  return [
    `idle: ${count} open streams, per stream`,
    line("opener", opener),
    line("acceptor", acceptor),
    `  both sides: ${
      (opener.heap + opener.buffers + acceptor.heap + acceptor.buffers).toFixed(2)
    } KiB`,
  ];
}

async function parent(seconds: number, pairs: number): Promise<void> {
  const proc = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL(import.meta.url).pathname,
      "--child",
      ...Deno.args,
    ],
    stdout: "piped",
    stderr: "inherit",
    stdin: "piped",
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let match: RegExpMatchArray | null = null;
  while (!(match = text.match(/ready raw=(\d+) mux=(\d+)/))) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the child ended before it was ready");
    text += value;
  }
  const rawPort = Number(match[1]);
  const muxPort = Number(match[2]);
  const session = new MuxSession(await connect(muxPort), { ...tuning, role: "client" });
  const out: string[] = [
    `mux bench: ${seconds} s per figure, loopback, ${navigator.hardwareConcurrency} CPUs`,
  ];
  try {
    await muxBulk(session, 0.5, false); // warm up both processes
    await muxBulk(session, 0.5, true);
    await rawBulk(rawPort, 0.5);
    // Alternate short runs, so that load from elsewhere on the machine hits
    // both alike; the ratio of each pair is the figure, its spread the noise.
    const runs = { raw: [] as number[], mux: [] as number[], headroom: [] as number[] };
    const cpu = { raw: [0, 0, 0], mux: [0, 0, 0], headroom: [0, 0, 0] };
    const measured = async (
      kind: keyof typeof runs,
      run: () => Promise<{ gbps: number; bytes: number }>,
    ) => {
      const p0 = cpuSeconds("self");
      const c0 = cpuSeconds(proc.pid);
      const r = await run();
      const c = cpu[kind];
      c[0]! += cpuSeconds("self") - p0;
      c[1]! += cpuSeconds(proc.pid) - c0;
      c[2]! += r.bytes;
      runs[kind].push(r.gbps);
    };
    for (let i = 0; i < pairs; i++) {
      await measured("raw", () => rawBulk(rawPort, seconds));
      await measured("mux", () => muxBulk(session, seconds, false));
      await measured("headroom", () => muxBulk(session, seconds, true));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(" ");
    const ratios = (xs: number[]) => xs.map((x, i) => x / runs.raw[i]!).sort((a, b) => a - b);
    const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
    const cpuLine = (kind: keyof typeof runs) => {
      const [p, c, bytes] = cpu[kind] as [number, number, number];
      const gib = bytes / 2 ** 30;
      return `CPU ms/GiB sender ${(1000 * p / gib).toFixed(0)}, receiver ${
        (1000 * c / gib).toFixed(0)
      }`;
    };
    out.push(`bulk, one stream, Gbit/s (${pairs} alternating rounds of ${seconds} s each):`);
    out.push(
      `  raw TCP        median ${median(runs.raw).toFixed(2)}  ${cpuLine("raw")}  runs ${
        fmt(runs.raw)
      }`,
    );
    for (const kind of ["mux", "headroom"] as const) {
      const r = ratios(runs[kind]);
      out.push(
        `  ${kind === "mux" ? "mux write()" : "mux headroom"}   median ${
          median(runs[kind]).toFixed(2)
        }  ` +
          `${cpuLine(kind)}  runs ${fmt(runs[kind])}`,
      );
      out.push(`    of raw: median ${pct(median(r))}, pairs ${r.map(pct).join(" ")}`);
    }
    out.push(`requests: 64-byte request and answer, a new stream (or connection) each, per second`);
    for (const c of [1, 10, 100]) {
      const w0 = session.stats.writes;
      const before = performance.now();
      const muxRate = await exchanges(c, seconds, () => muxExchange(session));
      const count = muxRate * (performance.now() - before) / 1000;
      const perExchange = (session.stats.writes - w0) / count;
      const rawRate = await exchanges(c, seconds, () => rawExchange(rawPort));
      out.push(
        `  ${String(c).padStart(3)} at once: mux ${muxRate.toFixed(0).padStart(6)}/s` +
          ` (${perExchange.toFixed(2)} writes each on the client side)` +
          `   raw TCP ${rawRate.toFixed(0).padStart(6)}/s`,
      );
    }
    out.push(...await latencyPhase(session));
    out.push(...await idlePhase(session, 1000));
  } finally {
    session.close();
    await session.closed;
    proc.stdin.close();
    proc.kill();
    await proc.status;
    await reader.cancel().catch(() => {});
  }
  console.log(out.join("\n"));
}

if (import.meta.main) {
  const args = Deno.args;
  const secondsArg = args.find((a) => a.startsWith("--seconds="));
  const seconds = secondsArg ? Number(secondsArg.slice(10)) : 1.5;
  const pairsArg = args.find((a) => a.startsWith("--pairs="));
  const pairs = pairsArg ? Number(pairsArg.slice(8)) : 7;
  if (args.includes("--child")) {
    await child();
  } else if (!gc) {
    // Again, with a collector we can call, for the memory figures.
    const status = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--expose-gc", new URL(import.meta.url).pathname, ...args],
      stdout: "inherit",
      stderr: "inherit",
    }).spawn().status;
    Deno.exit(status.code);
  } else {
    await parent(seconds, pairs);
  }
}
