/**
 * The three measurements of the tunnel benchmark, each run on the direct
 * path and the tunnel path to the same sink (see `sink.ts`):
 *
 * - `bulk`: throughput of one large transfer, upload or download,
 * - `latency`: connect until a 1-byte echo is back, over sequential connections,
 * - `hold`: many concurrent connections opened, checked, and held.
 *
 * Direct and tunnel samples are interleaved so that drift on the machine
 * (another job starting, CPU frequency) hits both alike. Every network step
 * has a deadline: a stuck step closes its connection and counts as an error.
 *
 * @module
 */

import { CHUNK, writeAll } from "./sink.ts";

/** The deadline of one connect, or one small echo. */
export const STEP_MS = 15_000;
/** The deadline of one bulk transfer. */
export const BULK_MS = 60_000;

/** A port on each path to the same sink service. */
export interface Paths {
  direct: number;
  tunnel: number;
}

/** Errors seen in a phase: how many, and the first few messages. */
export class Errors {
  count = 0;
  samples: string[] = [];
  add(err: unknown): void {
    this.count++;
    if (this.samples.length < 5) {
      this.samples.push(err instanceof Error ? err.message : String(err));
    }
  }
  toJSON() {
    return { count: this.count, samples: this.samples };
  }
}

function quietly(f: () => void): void {
  try {
    f();
  } catch {
    // already closed
  }
}

/** Connects to 127.0.0.1:port with TCP_NODELAY (as the tunnel does) within STEP_MS. */
export function connect(port: number): Promise<Deno.TcpConn> {
  const attempt = Deno.connect({ hostname: "127.0.0.1", port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      attempt.then((late) => late.close(), () => {});
      reject(new Error(`connect to port ${port} timed out after ${STEP_MS} ms`));
    }, STEP_MS);
  });
  return Promise.race([attempt, timeout]).then((conn) => {
    conn.setNoDelay(true);
    return conn;
  }).finally(() => clearTimeout(timer));
}

/** Runs `work`; at the deadline closes `conn`, which fails its pending I/O. */
async function bounded<T>(
  conn: Deno.Conn,
  ms: number,
  what: string,
  work: () => Promise<T>,
): Promise<T> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    quietly(() => conn.close());
  }, ms);
  try {
    return await work();
  } catch (err) {
    throw timedOut ? new Error(`${what} timed out after ${ms} ms`) : err;
  } finally {
    clearTimeout(timer);
  }
}

/** Fills `buf` completely; false on end of stream first. */
async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<boolean> {
  let got = 0;
  while (got < buf.length) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) return false;
    got += n;
  }
  return true;
}

// ---- (a) bulk throughput ---------------------------------------------------

/** One timed transfer of `bytes`, returning seconds; `buf` is preallocated. */
export type Transfer = (port: number, bytes: number, buf: Uint8Array) => Promise<number>;

/** Sends `bytes` to the discard service; seconds until the sink acknowledged them all. */
export async function upload(port: number, bytes: number, buf: Uint8Array): Promise<number> {
  const conn = await connect(port);
  try {
    return await bounded(conn, BULK_MS, "upload", async () => {
      const t0 = performance.now();
      for (let left = bytes; left > 0; left -= buf.length) {
        await writeAll(conn, left >= buf.length ? buf : buf.subarray(0, left));
      }
      await conn.closeWrite();
      const ack = new Uint8Array(8);
      if (!(await readFull(conn, ack))) throw new Error("upload: sink closed without an ack");
      const counted = Number(new DataView(ack.buffer).getBigUint64(0));
      if (counted !== bytes) throw new Error(`upload: sink counted ${counted} of ${bytes} bytes`);
      return (performance.now() - t0) / 1000;
    });
  } finally {
    quietly(() => conn.close());
  }
}

/** Asks the source service for `bytes`; seconds until all arrived and it half-closed. */
export async function download(port: number, bytes: number, buf: Uint8Array): Promise<number> {
  const conn = await connect(port);
  try {
    return await bounded(conn, BULK_MS, "download", async () => {
      const t0 = performance.now();
      const ask = new Uint8Array(8);
      new DataView(ask.buffer).setBigUint64(0, BigInt(bytes));
      await writeAll(conn, ask);
      let got = 0;
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) got += n;
      if (got !== bytes) throw new Error(`download: got ${got} of ${bytes} bytes`);
      return (performance.now() - t0) / 1000;
    });
  } finally {
    quietly(() => conn.close());
  }
}

/** What `bulk` measured. */
export interface BulkResult {
  /** MiB/s of each repetition on each path. */
  direct: number[];
  tunnel: number[];
  /** CPU seconds each watched process spent per GiB sent through the tunnel. */
  cpuPerGiB: Record<string, number>;
  errors: Errors;
}

/** Something whose CPU seconds can be sampled, e.g. a `Child`. */
export interface Watched {
  name: string;
  cpuSeconds(): number;
}

/**
 * After one warm-up per path (JIT, buffer pools), `reps` transfers of `mib`
 * MiB alternating direct and tunnel; CPU of `watched` is sampled around the
 * tunnel transfers.
 */
export async function bulk(
  transfer: Transfer,
  paths: Paths,
  options: { mib: number; reps: number; watched: Watched[] },
): Promise<BulkResult> {
  const bytes = options.mib * 2 ** 20;
  const buf = new Uint8Array(CHUNK).map((_, i) => (i * 7) & 0xff);
  const out: BulkResult = { direct: [], tunnel: [], cpuPerGiB: {}, errors: new Errors() };
  const fail = (err: unknown) => out.errors.add(err);
  const warm = Math.min(bytes, 32 * 2 ** 20);
  await transfer(paths.direct, warm, buf).catch(fail);
  await transfer(paths.tunnel, warm, buf).catch(fail);
  const cpu = options.watched.map(() => 0);
  for (let i = 0; i < options.reps; i++) {
    await transfer(paths.direct, bytes, buf).then(
      (t) => out.direct.push(bytes / 2 ** 20 / t),
      fail,
    );
    const before = options.watched.map((w) => w.cpuSeconds());
    await transfer(paths.tunnel, bytes, buf).then((t) => {
      out.tunnel.push(bytes / 2 ** 20 / t);
      options.watched.forEach((w, j) => cpu[j]! += w.cpuSeconds() - before[j]!);
    }, fail);
  }
  const gib = out.tunnel.length * bytes / 2 ** 30;
  options.watched.forEach((w, j) => out.cpuPerGiB[w.name] = gib > 0 ? cpu[j]! / gib : NaN);
  return out;
}

// ---- (b) connect-to-first-byte latency ---------------------------------------

/** Sends one byte on `conn` and waits for the same byte back. */
async function echoByte(conn: Deno.TcpConn, byte: number): Promise<void> {
  await writeAll(conn, new Uint8Array([byte]));
  const back = new Uint8Array(1);
  if (!(await readFull(conn, back))) throw new Error("echo: closed before the byte came back");
  if (back[0] !== byte) throw new Error(`echo: sent ${byte}, got ${back[0]}`);
}

/** Milliseconds from starting to connect until the 1-byte echo is back; the close is not timed. */
export async function roundTrip(port: number, byte: number): Promise<number> {
  const t0 = performance.now();
  const conn = await connect(port);
  try {
    return await bounded(conn, STEP_MS, "echo", async () => {
      await echoByte(conn, byte);
      return performance.now() - t0;
    });
  } finally {
    quietly(() => conn.close());
  }
}

/** What `latency` measured. */
export interface LatencyResult {
  /** Milliseconds per connection, sorted. */
  direct: number[];
  tunnel: number[];
  /** CPU microseconds each watched process spent per tunnelled connection. */
  cpuPerConnMicros: Record<string, number>;
  errors: { direct: Errors; tunnel: Errors };
}

/** Connections per block; blocks alternate between the paths. */
const BLOCK = 100;

/** `count` timed connections per path, after an untimed warm-up block on each. */
export async function latency(
  paths: Paths,
  count: number,
  watched: Watched[],
): Promise<LatencyResult> {
  const out: LatencyResult = {
    direct: [],
    tunnel: [],
    cpuPerConnMicros: {},
    errors: { direct: new Errors(), tunnel: new Errors() },
  };
  const cpu = watched.map(() => 0);
  const run = async (path: keyof Paths, n: number, keep: boolean) => {
    const before = watched.map((w) => w.cpuSeconds());
    for (let i = 0; i < n; i++) {
      try {
        const ms = await roundTrip(paths[path], i & 0xff);
        if (keep) out[path].push(ms);
      } catch (err) {
        out.errors[path].add(err);
      }
    }
    if (keep && path === "tunnel") {
      watched.forEach((w, j) => cpu[j]! += w.cpuSeconds() - before[j]!);
    }
  };
  await run("direct", BLOCK, false);
  await run("tunnel", BLOCK, false);
  for (let done = 0; done < count; done += BLOCK) {
    await run("direct", Math.min(BLOCK, count - done), true);
    await run("tunnel", Math.min(BLOCK, count - done), true);
  }
  out.direct.sort((a, b) => a - b);
  out.tunnel.sort((a, b) => a - b);
  watched.forEach((w, j) => out.cpuPerConnMicros[w.name] = cpu[j]! / count * 1e6);
  return out;
}

/** The nearest-rank percentile of sorted values; NaN when there are none. */
export function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

// ---- (c) many held connections -------------------------------------------------

/** What `hold` measured. */
export interface HeldResult {
  /** Connections that opened and echoed. */
  opened: number;
  /** Wall time to open them all and see each one's echo, ms. */
  openMs: number;
  /** Wall time for a second echo on every held connection at once, ms. */
  recheckMs: number;
  errors: Errors;
}

/**
 * Opens `count` connections to an echo service (at most `concurrency`
 * opening at once) and checks each echoes; calls `whileHeld` with all of
 * them open, checks them all again at once, then closes them. With
 * `halfway`, the first half are opened first, and `halfway(opened)` called
 * with them held before the rest are opened: memory measured there and in
 * `whileHeld` gives the cost of one more held connection, free of whatever
 * earlier work left in the heap.
 */
export async function hold(
  port: number,
  count: number,
  concurrency: number,
  whileHeld: () => void | Promise<void>,
  halfway?: (opened: number) => void | Promise<void>,
): Promise<HeldResult> {
  const conns: Deno.TcpConn[] = [];
  const errors = new Errors();
  let next = 0;
  const t0 = performance.now();
  let until = halfway === undefined ? count : Math.floor(count / 2);
  const opener = async () => {
    while (next < until) {
      const byte = next++ & 0xff;
      let conn: Deno.TcpConn;
      try {
        conn = await connect(port);
      } catch (err) {
        errors.add(err);
        continue;
      }
      try {
        await bounded(conn, STEP_MS, "echo", () => echoByte(conn, byte));
        conns.push(conn);
      } catch (err) {
        quietly(() => conn.close());
        errors.add(err);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, opener));
    if (halfway !== undefined) {
      await halfway(conns.length);
      until = count;
      await Promise.all(Array.from({ length: Math.min(concurrency, count) }, opener));
    }
    const openMs = performance.now() - t0;
    await whileHeld();
    const t1 = performance.now();
    await Promise.all(
      conns.map((c, i) =>
        bounded(c, STEP_MS, "echo on a held connection", () => echoByte(c, (i + 1) & 0xff))
          .catch((err) => errors.add(err))
      ),
    );
    return { opened: conns.length, openMs, recheckMs: performance.now() - t1, errors };
  } finally {
    for (const conn of conns) quietly(() => conn.close());
  }
}
