/**
 * Local apps behind a tunnel, listening on 127.0.0.1: any handler, or an
 * echo app that passes the half-close on. `using` closes them.
 *
 * @module
 */

import { writeAll } from "./net.ts";

/** A local app for tests, listening on 127.0.0.1; `using` closes it. */
export interface LocalApp extends Disposable {
  port: number;
  addr: string;
  /** Connections accepted so far. */
  accepted: number;
  close(): void;
}

/** A local app that runs `handle` for every connection. */
export function localApp(handle: (conn: Deno.TcpConn) => Promise<void>): LocalApp {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.TcpConn>();
  const app: LocalApp = {
    port: listener.addr.port,
    addr: `127.0.0.1:${listener.addr.port}`,
    accepted: 0,
    close() {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
    [Symbol.dispose]() {
      app.close();
    },
  };
  (async () => {
    try {
      for await (const conn of listener) {
        app.accepted++;
        conns.add(conn);
        handle(conn).catch(() => {}).finally(() => {
          conns.delete(conn);
          try {
            conn.close();
          } catch { /* closed */ }
        });
      }
    } catch { /* listener closed */ }
  })();
  return app;
}

/** Echoes every byte back, passing on the half-close. */
export function echoApp(): LocalApp {
  return localApp(async (conn) => {
    const buf = new Uint8Array(64 * 1024);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      await writeAll(conn, buf.subarray(0, n));
    }
    await conn.closeWrite();
  });
}
