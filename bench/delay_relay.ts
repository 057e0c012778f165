/**
 * A userspace relay that adds a fixed one-way delay to every byte, both
 * ways: the benchmark's stand-in for a long link (this kernel has no netem).
 * It sits between a tunnel's client and its server, so every round trip the
 * tunnel makes on its own link (a work connection, a TLS handshake, a window
 * update) costs the emulated RTT, while users reach the server directly.
 *
 * Each chunk read is stamped and written when its time comes, in order, so
 * the delay holds under load without changing the byte stream. Bandwidth is
 * not limited; a bounded backlog per direction stops reading when the far
 * side does not keep up, as a real link's buffers would.
 *
 * @module
 */

/** A running relay. */
export interface DelayRelay {
  /** The port to dial instead of the target. */
  readonly port: number;
  close(): void;
}

/** Bytes a direction holds in flight before it stops reading. */
const BACKLOG_BYTES = 8 * 1024 * 1024;
const CHUNK = 64 * 1024;

/** Listens on `hostname`:`port` (0: any free port) and relays to `target` with `delayMs` each way. */
export function startDelayRelay(
  target: { hostname: string; port: number },
  delayMs: number,
  hostname = "127.0.0.1",
  port = 0,
): DelayRelay {
  const listener = Deno.listen({ hostname, port });
  const conns = new Set<Deno.TcpConn>();
  (async () => {
    for await (const inbound of listener) {
      conns.add(inbound);
      Deno.connect(target).then((outbound) => {
        conns.add(outbound);
        inbound.setNoDelay(true);
        outbound.setNoDelay(true);
        const done = () => {
          quietly(() => inbound.close());
          quietly(() => outbound.close());
          conns.delete(inbound);
          conns.delete(outbound);
        };
        Promise.all([pipe(inbound, outbound, delayMs), pipe(outbound, inbound, delayMs)])
          .finally(done);
      }, () => {
        quietly(() => inbound.close());
        conns.delete(inbound);
      });
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      quietly(() => listener.close());
      for (const c of conns) quietly(() => c.close());
    },
  };
}

/** Copies `from` to `to`, each chunk written `delayMs` after it was read. */
async function pipe(from: Deno.TcpConn, to: Deno.TcpConn, delayMs: number): Promise<void> {
  const queue: Array<{ due: number; bytes: Uint8Array | null }> = [];
  let backlog = 0;
  let wakeWriter: () => void = () => {};
  let wakeReader: () => void = () => {};
  const writer = (async () => {
    while (true) {
      while (queue.length === 0) await new Promise<void>((r) => wakeWriter = r);
      const item = queue.shift()!;
      const wait = item.due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (item.bytes === null) {
        await to.closeWrite().catch(() => {});
        return;
      }
      for (let off = 0; off < item.bytes.length;) off += await to.write(item.bytes.subarray(off));
      backlog -= item.bytes.length;
      wakeReader();
    }
  })().catch(() => {
    // the far side is gone: stop reading this side too
    quietly(() => from.close());
    wakeReader();
  });
  try {
    const buf = new Uint8Array(CHUNK);
    while (true) {
      while (backlog >= BACKLOG_BYTES) await new Promise<void>((r) => wakeReader = r);
      const n = await from.read(buf);
      const due = performance.now() + delayMs;
      if (n === null) {
        queue.push({ due, bytes: null });
        wakeWriter();
        break;
      }
      backlog += n;
      queue.push({ due, bytes: buf.slice(0, n) });
      wakeWriter();
    }
  } catch {
    queue.push({ due: performance.now(), bytes: null });
    wakeWriter();
  }
  await writer;
}

function quietly(f: () => void): void {
  try {
    f();
  } catch {
    // already closed
  }
}
