/**
 * The two-way copy of `lib/tunnel/join.ts` over real loopback TCP. Each test builds
 * two connected pairs: the test holds the outer ends (`userA`, `userB`) and
 * joins the inner ends (`a`, `b`), so every byte crosses two sockets.
 */

import assert from "node:assert/strict";
import { BufferPool, join, type JoinStats, LARGE_BUFFER } from "../../lib/tunnel/join.ts";

interface Pair {
  outer: Deno.TcpConn;
  inner: Deno.TcpConn;
}

/** A connected TCP pair on 127.0.0.1, on a port the system picks. */
async function tcpPair(): Promise<Pair> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [outer, inner] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  return { outer, inner };
}

interface Rig {
  userA: Deno.TcpConn;
  a: Deno.TcpConn;
  b: Deno.TcpConn;
  userB: Deno.TcpConn;
  [Symbol.dispose](): void;
}

async function rig(): Promise<Rig> {
  const [pa, pb] = await Promise.all([tcpPair(), tcpPair()]);
  return {
    userA: pa.outer,
    a: pa.inner,
    b: pb.inner,
    userB: pb.outer,
    [Symbol.dispose]() {
      for (const c of [pa.outer, pa.inner, pb.inner, pb.outer]) {
        try {
          c.close();
        } catch {
          // join or the test closed it already
        }
      }
    },
  };
}

/** Deterministic bytes (xorshift32), so a failure is reproducible. */
function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Writes `data` in uneven slices (the copy must not depend on write sizes). */
async function writeSlices(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  const sizes = [1, 100, 7_000, 65_536, 300_000, 4_095];
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const end = Math.min(data.length, off + (sizes[i % sizes.length] as number));
    let at = off;
    while (at < end) at += await conn.write(data.subarray(at, end));
    off = end;
  }
}

/** Reads until EOF; fails if more than `limit` bytes arrive. */
async function readToEnd(conn: Deno.Conn, limit = 64 * 1024 * 1024): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(128 * 1024);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    total += n;
    if (total > limit) throw new Error(`more than ${limit} bytes`);
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** Reads exactly `n` bytes. */
async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let off = 0;
  while (off < n) {
    const got = await conn.read(out.subarray(off));
    if (got === null) throw new Error(`EOF after ${off} of ${n} bytes`);
    off += got;
  }
  return out;
}

/** Resolves to what the next read gives (null at EOF) or "error", or "timeout". */
async function nextRead(conn: Deno.Conn, ms: number): Promise<number | null | "error" | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
  const read = conn.read(new Uint8Array(16)).catch(() => "error" as const);
  try {
    return await Promise.race([read, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const text = new TextEncoder();

Deno.test("join copies several MB each way byte for byte", async () => {
  using r = await rig();
  const size = 6 * 1024 * 1024 + 12_345;
  const fromA = pattern(size, 1);
  const fromB = pattern(size - 777, 2);
  const stats: JoinStats = { aToB: 0, bToA: 0 };
  const joined = join(r.a, r.b, { stats });
  const [gotAtB, gotAtA] = await Promise.all([
    readToEnd(r.userB),
    readToEnd(r.userA),
    writeSlices(r.userA, fromA).then(() => r.userA.closeWrite()),
    writeSlices(r.userB, fromB).then(() => r.userB.closeWrite()),
  ]);
  const result = await joined;
  assert.equal(await sha256(gotAtB), await sha256(fromA));
  assert.equal(await sha256(gotAtA), await sha256(fromB));
  assert.equal(gotAtB.length, size);
  assert.equal(gotAtA.length, size - 777);
  assert.deepEqual(result, { aToB: size, bToA: size - 777 });
  assert.equal(result.error, undefined);
  assert.deepEqual(stats, { aToB: size, bToA: size - 777 }, "stats updated in place");
});

Deno.test("join passes a half-close on and keeps the other direction open", async () => {
  using r = await rig();
  let done = false;
  const joined = join(r.a, r.b).then((res) => {
    done = true;
    return res;
  });
  await r.userA.write(text.encode("request"));
  await r.userA.closeWrite();
  // B sees the request then EOF...
  assert.deepEqual(await readToEnd(r.userB), text.encode("request"));
  // ...and can still answer, in several writes, while A still reads.
  const reply = pattern(200_000, 9);
  await writeSlices(r.userB, reply);
  const got = await readExactly(r.userA, reply.length);
  assert.equal(await sha256(got), await sha256(reply));
  assert.equal(done, false, "the join is still running while B->A is open");
  await r.userB.write(text.encode("tail"));
  assert.deepEqual(await readExactly(r.userA, 4), text.encode("tail"));
  await r.userB.closeWrite();
  assert.deepEqual(await readToEnd(r.userA), new Uint8Array(0));
  const result = await joined;
  assert.deepEqual(result, { aToB: 7, bToA: 200_004 });
});

Deno.test("join half-closes from B first just as well", async () => {
  using r = await rig();
  const joined = join(r.a, r.b);
  await r.userB.write(text.encode("banner\n"));
  await r.userB.closeWrite();
  assert.deepEqual(await readToEnd(r.userA), text.encode("banner\n"));
  await r.userA.write(text.encode("late"));
  assert.deepEqual(await readExactly(r.userB, 4), text.encode("late"));
  await r.userA.closeWrite();
  assert.equal(await nextRead(r.userB, 2000), null);
  assert.deepEqual(await joined, { aToB: 4, bToA: 7 });
});

Deno.test("aToBFirst and a delayed bToAFirst are delivered before the streamed bytes", async () => {
  using r = await rig();
  const prefixB = new Promise<Uint8Array>((resolve) =>
    setTimeout(() => resolve(text.encode("<from-b-earlier>")), 50)
  );
  const joined = join(r.a, r.b, { aToBFirst: text.encode("<from-a-earlier>"), bToAFirst: prefixB });
  // Both users send at once; B's bytes must still wait for B's prefix.
  await r.userA.write(text.encode("A-live"));
  await r.userB.write(text.encode("B-live"));
  await r.userA.closeWrite();
  await r.userB.closeWrite();
  const [atB, atA] = await Promise.all([readToEnd(r.userB), readToEnd(r.userA)]);
  assert.equal(new TextDecoder().decode(atB), "<from-a-earlier>A-live");
  assert.equal(new TextDecoder().decode(atA), "<from-b-earlier>B-live");
  assert.deepEqual(await joined, { aToB: 16 + 6, bToA: 16 + 6 });
});

Deno.test("an empty bToAFirst sends nothing extra", async () => {
  using r = await rig();
  const joined = join(r.a, r.b, { bToAFirst: new Uint8Array(0), aToBFirst: new Uint8Array(0) });
  await r.userB.write(text.encode("x"));
  await r.userB.closeWrite();
  await r.userA.closeWrite();
  assert.deepEqual(await readToEnd(r.userA), text.encode("x"));
  assert.deepEqual(await readToEnd(r.userB), new Uint8Array(0));
  assert.deepEqual(await joined, { aToB: 0, bToA: 1 });
});

Deno.test("a rejecting bToAFirst fails the join and closes both sides", async () => {
  using r = await rig();
  const boom = new Error("work connection lost");
  const began = performance.now();
  const result = await join(r.a, r.b, { bToAFirst: Promise.reject(boom) });
  assert.equal(result.error, boom);
  assert.equal(result.aToB, 0);
  assert.equal(result.bToA, 0);
  // Both outer ends see the close (EOF or reset), promptly.
  const [atA, atB] = await Promise.all([nextRead(r.userA, 2000), nextRead(r.userB, 2000)]);
  assert.ok(atA === null || atA === "error", `user A saw ${atA}`);
  assert.ok(atB === null || atB === "error", `user B saw ${atB}`);
  assert.ok(performance.now() - began < 2000);
  // The inner ends are closed: using them again throws.
  assert.throws(() => r.a.close(), Deno.errors.BadResource);
  assert.throws(() => r.b.close(), Deno.errors.BadResource);
});

Deno.test("a failing side ends the join at once and the other side is closed", async () => {
  using r = await rig();
  const joined = join(r.a, r.b);
  await r.userA.write(text.encode("hello"));
  assert.deepEqual(await readExactly(r.userB, 5), text.encode("hello"));
  // Close b's socket under the join: its read fails, so the join must fail and close a.
  r.b.close();
  const result = await joined;
  assert.ok(result.error !== undefined, "a failure is reported");
  assert.equal(result.aToB, 5);
  const atA = await nextRead(r.userA, 2000);
  assert.ok(atA === null || atA === "error", `user A saw ${atA}`);
});

Deno.test("BufferPool hands back the buffers it was given, up to its limit", () => {
  const pool = new BufferPool(2);
  const x = pool.take();
  const y = pool.take();
  const z = pool.take();
  assert.equal(x.length, LARGE_BUFFER);
  assert.notEqual(x, y);
  pool.give(x);
  pool.give(y);
  pool.give(z); // over the limit of 2: dropped
  pool.give(new Uint8Array(10)); // wrong size: dropped
  const got = [pool.take(), pool.take()];
  assert.ok(got.includes(x) && got.includes(y), "the two kept buffers come back");
  const fresh = pool.take();
  assert.ok(fresh !== x && fresh !== y && fresh !== z);
  assert.equal(fresh.length, LARGE_BUFFER);
});

Deno.test("join takes large buffers from the pool for bulk data and returns them", async () => {
  const taken: Uint8Array[] = [];
  const given: Uint8Array[] = [];
  class CountingPool extends BufferPool {
    override take(): Uint8Array {
      const buf = super.take();
      taken.push(buf);
      return buf;
    }
    override give(buf: Uint8Array): void {
      given.push(buf);
      super.give(buf);
    }
  }
  const pool = new CountingPool(8);
  const bulk = pattern(2 * 1024 * 1024, 5);
  for (let round = 0; round < 2; round++) {
    using r = await rig();
    const joined = join(r.a, r.b, { pool });
    const [atB, atA] = await Promise.all([
      readToEnd(r.userB),
      readToEnd(r.userA),
      writeSlices(r.userA, bulk).then(() => r.userA.closeWrite()),
      writeSlices(r.userB, bulk).then(() => r.userB.closeWrite()),
    ]);
    assert.equal(await sha256(atB), await sha256(bulk));
    assert.equal(await sha256(atA), await sha256(bulk));
    assert.deepEqual(await joined, { aToB: bulk.length, bToA: bulk.length });
  }
  assert.equal(taken.length, 4, "each direction of each join took one large buffer");
  // Identity, not contents: the very same buffers went back.
  assert.equal(given.length, 4);
  assert.ok(given.every((buf) => taken.includes(buf)), "and gave the same ones back");
  assert.equal(new Set(taken).size, 2, "the second join reused the first join's two buffers");
});

Deno.test("a small exchange never takes a large buffer", async () => {
  let takes = 0;
  class CountingPool extends BufferPool {
    override take(): Uint8Array {
      takes++;
      return super.take();
    }
  }
  using r = await rig();
  const joined = join(r.a, r.b, { pool: new CountingPool() });
  await r.userA.write(text.encode("ping"));
  assert.deepEqual(await readExactly(r.userB, 4), text.encode("ping"));
  await r.userB.write(text.encode("pong"));
  assert.deepEqual(await readExactly(r.userA, 4), text.encode("pong"));
  await r.userA.closeWrite();
  await r.userB.closeWrite();
  assert.deepEqual(await joined, { aToB: 4, bToA: 4 });
  assert.equal(takes, 0);
});
