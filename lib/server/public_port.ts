/**
 * Binding an app's public port on the server host: the port an `expose`
 * asked for, or the first free one of the registry's candidates.
 *
 * @module
 */

import type { WireRefusalCode } from "../util/errors.ts";
import { netReason } from "../transport/net.ts";

/**
 * Binds the public port an `expose` asked for (`port`; 0: the first of
 * `candidates` that binds), or says why not. `unbindable` hears of a port
 * this server may not bind at all (e.g. below 1024).
 */
export function bindPublicPort(
  host: string,
  port: number,
  candidates: number[],
  unbindable: (why: string) => void,
): { port: number; listener: Deno.TcpListener } | { code: WireRefusalCode; message: string } {
  for (const candidate of candidates) {
    try {
      const listener = Deno.listen({ hostname: host, port: candidate, transport: "tcp" });
      return { port: candidate, listener };
    } catch (err) {
      if (!(err instanceof Deno.errors.AddrInUse)) {
        // Not a busy port but a port this server may not bind (e.g. below 1024).
        const why = `port ${candidate} cannot be bound on the server (${netReason(err)})`;
        unbindable(why);
        if (port !== 0) return { code: "port_not_allowed", message: why };
        continue;
      }
      // Another program on the server host holds it; a picked port just moves on.
      if (port !== 0) {
        return {
          code: "port_taken",
          message: `port ${port} is in use on the server host (address in use)`,
        };
      }
    }
  }
  return {
    code: "no_free_port",
    message: "no free port could be bound in the server's allowed ports",
  };
}
