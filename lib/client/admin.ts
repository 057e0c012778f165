/**
 * The client's optional admin listener (`admin: HOST:PORT` in the group
 * file): `GET /api/status` answers with the client's status as JSON (link
 * state, retries, apps, ports, bytes). It holds no secret; still, bind it to
 * loopback unless something else guards it, since it shows local addresses.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatHostPort, type HostPort, isLoopback } from "../util/addr.ts";
import type { ClientStatus } from "./status.ts";
import { ListenError } from "../util/errors.ts";
import { netReason } from "../transport/net.ts";

const HEADERS = {
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
};

/** A running admin listener. */
export class ClientAdmin {
  /** The address as bound. */
  readonly addr: HostPort;
  #server: Deno.HttpServer<Deno.NetAddr>;

  /** Binds at once; throws `ListenError` if it cannot. */
  constructor(bind: HostPort, status: () => ClientStatus) {
    const log = getLogger(["burrow", "client", "admin"]);
    try {
      this.#server = Deno.serve({
        hostname: bind.hostname,
        port: bind.port,
        onListen: () => {},
      }, (request) => {
        const path = new URL(request.url).pathname;
        if (request.method !== "GET" && request.method !== "HEAD") {
          return text("method not allowed\n", 405, { allow: "GET, HEAD" });
        }
        if (path !== "/api/status") return text("not found\n", 404);
        return new Response(JSON.stringify(status()), {
          headers: { ...HEADERS, "content-type": "application/json; charset=utf-8" },
        });
      });
    } catch (err) {
      throw new ListenError(
        `cannot listen for admin on ${formatHostPort(bind)}: ${netReason(err)}`,
      );
    }
    this.addr = { hostname: this.#server.addr.hostname, port: this.#server.addr.port };
    log.info(`admin API on http://${formatHostPort(this.addr)}/api/status`);
    if (!isLoopback(bind.hostname)) {
      log.warn(`the admin API on ${formatHostPort(this.addr)} is reachable from the network`);
    }
  }

  /** Stops listening. */
  async close(): Promise<void> {
    await this.#server.shutdown();
  }
}

function text(body: string, status: number, extra: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { ...HEADERS, "content-type": "text/plain; charset=utf-8", ...extra },
  });
}
