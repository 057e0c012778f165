/**
 * An echo app as its own process (for tests that run apps inside a network
 * namespace): listens on 127.0.0.1, prints `listening PORT`, echoes every
 * byte and passes the half-close on.
 *
 * @module
 */

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(`listening ${listener.addr.port}`);
for await (const conn of listener) {
  (async () => {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        let off = 0;
        while (off < n) off += await conn.write(buf.subarray(off, n));
      }
      await conn.closeWrite();
    } catch {
      // the peer went away: nothing to echo to
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  })();
}
