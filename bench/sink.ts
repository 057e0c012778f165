/**
 * The app behind the tunnel in the benchmark: three tiny TCP services on
 * loopback, the same for the direct and the tunnelled runs.
 *
 * - echo: writes back every byte it reads; half-closes after the peer does.
 * - discard: reads to end of stream, then answers with the byte count as an
 *   8-byte big-endian integer, so the sender knows every byte arrived.
 * - source: reads an 8-byte big-endian count, sends that many bytes, then
 *   half-closes.
 *
 * Run as a program it prints `sink echo=P discard=P source=P` on stdout and
 * serves until its stdin closes or it gets SIGTERM, so that it never outlives
 * the benchmark that spawned it. The benchmark can also run it in-process.
 *
 * @module
 */

/** The bound ports of a running sink. */
export interface SinkPorts {
  echo: number;
  discard: number;
  source: number;
}

/** A running sink. */
export interface Sink {
  readonly ports: SinkPorts;
  close(): void;
}

/** Bulk buffers match the tunnel's large buffer so neither side is favoured. */
export const CHUNK = 256 * 1024;
const ECHO_BUFFER = 16 * 1024;

/** Binds the three services on 127.0.0.1, on free ports. */
export function startSink(): Sink {
  const conns = new Set<Deno.TcpConn>();
  const listeners = {
    echo: Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    discard: Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    source: Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  };
  // One read-only payload shared by every source connection: no per-connection allocation.
  const payload = new Uint8Array(CHUNK).map((_, i) => i & 0xff);
  serve(listeners.echo, conns, echo);
  serve(listeners.discard, conns, discard);
  serve(listeners.source, conns, (conn) => source(conn, payload));
  return {
    ports: {
      echo: listeners.echo.addr.port,
      discard: listeners.discard.addr.port,
      source: listeners.source.addr.port,
    },
    close() {
      for (const l of Object.values(listeners)) quietly(() => l.close());
      for (const c of conns) quietly(() => c.close());
    },
  };
}

async function serve(
  listener: Deno.TcpListener,
  conns: Set<Deno.TcpConn>,
  handle: (conn: Deno.TcpConn) => Promise<void>,
): Promise<void> {
  try {
    for await (const conn of listener) {
      conn.setNoDelay(true);
      conns.add(conn);
      handle(conn).catch(() => {}).finally(() => {
        conns.delete(conn);
        quietly(() => conn.close());
      });
    }
  } catch {
    // listener closed: the sink is stopping
  }
}

async function echo(conn: Deno.TcpConn): Promise<void> {
  const buf = new Uint8Array(ECHO_BUFFER);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    await writeAll(conn, buf.subarray(0, n));
  }
  await conn.closeWrite();
}

async function discard(conn: Deno.TcpConn): Promise<void> {
  const buf = new Uint8Array(CHUNK);
  let total = 0;
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    total += n;
  }
  const ack = new Uint8Array(8);
  new DataView(ack.buffer).setBigUint64(0, BigInt(total));
  await writeAll(conn, ack);
  await conn.closeWrite();
}

async function source(conn: Deno.TcpConn, payload: Uint8Array): Promise<void> {
  const head = new Uint8Array(8);
  let got = 0;
  while (got < 8) {
    const n = await conn.read(head.subarray(got));
    if (n === null) return;
    got += n;
  }
  let left = Number(new DataView(head.buffer).getBigUint64(0));
  while (left > 0) {
    const part = left >= payload.length ? payload : payload.subarray(0, left);
    await writeAll(conn, part);
    left -= part.length;
  }
  await conn.closeWrite();
}

/** Writes every byte of `p`. */
export async function writeAll(conn: Deno.Conn, p: Uint8Array): Promise<void> {
  let off = 0;
  while (off < p.length) off += await conn.write(off === 0 ? p : p.subarray(off));
}

function quietly(f: () => void): void {
  try {
    f();
  } catch {
    // already closed
  }
}

if (import.meta.main) {
  const sink = startSink();
  const { echo, discard, source } = sink.ports;
  console.log(`sink echo=${echo} discard=${discard} source=${source}`);
  const stop = () => {
    sink.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  // The parent holds our stdin open; when it goes away, so do we.
  for await (const _ of Deno.stdin.readable) {
    // nothing is expected on stdin
  }
  stop();
}
