/**
 * A `Deno.Conn` as a Node.js `Duplex` stream, so `node:tls` can run over a
 * connection Deno opened, such as a tunnel through a proxy. The server link
 * needs this to read the server's certificate chain (which only `node:tls`
 * shows) when the server is reached through a proxy.
 *
 * @module
 */

import { Duplex } from "node:stream";

/**
 * Wraps `conn`: reads become pushes, writes are written whole, and
 * destroying the stream closes the connection.
 *
 * @example
 * ```ts
 * import * as nodeTls from "node:tls";
 * import { duplexOf } from "./conn_duplex.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 443 });
 * const tls = nodeTls.connect({ socket: duplexOf(conn), rejectUnauthorized: false });
 * tls.once("secureConnect", () => tls.destroy());
 * ```
 */
export function duplexOf(conn: Deno.Conn): Duplex {
  const buf = new Uint8Array(16 * 1024);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch {
      // already closed
    }
  };
  return new Duplex({
    read() {
      conn.read(buf).then(
        (n) => this.push(n === null ? null : buf.slice(0, n)),
        (err) => this.destroy(err),
      );
    },
    write(chunk: Uint8Array, _encoding, done) {
      (async () => {
        for (let off = 0; off < chunk.length;) off += await conn.write(chunk.subarray(off));
      })().then(() => done(), done);
    },
    final(done) {
      conn.closeWrite().then(() => done(), () => done());
    },
    destroy(err, done) {
      close();
      done(err);
    },
  });
}
