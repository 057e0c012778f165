/**
 * The runtime's floor for the comparison benchmark: the least a Deno
 * process can do to relay a TCP connection. Each accepted connection dials
 * the target and the two are copied both ways with one 256 KiB buffer per
 * direction and nothing else: no framing, no TLS, no handshake, no limits,
 * no logging. Two of these in a row (`floorPath` in `paths.ts`) stand where
 * burrow's server and client stand, so their figures are what any tunnel
 * written for Deno pays for its two JavaScript hops before doing any of a
 * tunnel's work.
 *
 * Run: `deno run --allow-net=127.0.0.1 bench/floor_relay.ts TARGET_PORT`;
 * prints `floor PORT` once it listens, and serves until stdin closes.
 *
 * @module
 */

const target = Number(Deno.args[0]);
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(`floor ${listener.addr.port}`);

async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(256 * 1024);
  try {
    while (true) {
      const n = await from.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
    await to.closeWrite();
  } catch {
    // a reset ends this direction; the other ends with it
  }
}

async function relay(user: Deno.TcpConn): Promise<void> {
  user.setNoDelay(true);
  let next: Deno.TcpConn | undefined;
  try {
    next = await Deno.connect({ hostname: "127.0.0.1", port: target });
    next.setNoDelay(true);
    await Promise.all([pipe(user, next), pipe(next, user)]);
  } catch {
    // the target refused: the user is closed below
  } finally {
    for (const c of [user, next]) {
      try {
        c?.close();
      } catch {
        // closed already
      }
    }
  }
}

(async () => {
  for await (const user of listener) relay(user);
})();
// Ends with its parent: the benchmark holds our stdin.
for await (const _ of Deno.stdin.readable) { /* until stdin closes */ }
Deno.exit(0);
