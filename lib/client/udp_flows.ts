/**
 * The client's side of UDP flows (see `lib/server/udp_app.ts` and
 * `lib/protocol/work.ts`): for each `udp_flow` stream the server opens, a
 * UDP socket of its own connected to the app's `local` address (so the local
 * service sees one source per user), then the one-byte answer. Datagrams of
 * the flow from the server (DATAGRAM frames on the same mux session) go to
 * that socket; what the service answers goes back as datagrams with the
 * flow id. The flow ends when its stream ends (the server ended it: idle,
 * closed app, or the session died) or when its socket fails.
 *
 * @module
 */

import dgram from "node:dgram";
import type { Logger } from "@logtape/logtape";
import { formatHostPort, type HostPort } from "../util/addr.ts";
import { errorMessage } from "../util/errors.ts";
import type { JoinStats } from "../tunnel/join.ts";
import type { MuxSession, MuxStream } from "../transport/mux/mod.ts";
import type { UdpFlow } from "../protocol/protocol.ts";
import type { WantedApp } from "./tunnel.ts";

/** The prefix of a reset reason that says the local app could not be reached (the server's too). */
const UNREACHABLE = "unreachable: ";
/** The first byte on a stream: the socket is open (the server's `STARTED`). */
const STARTED = new Uint8Array([0]);

interface ClientFlow {
  readonly socket: dgram.Socket;
  readonly stats: JoinStats;
}

/** The UDP flows of one client session, across its mux sessions. */
export class ClientUdpFlows {
  #flows = new Map<MuxSession, Map<number, ClientFlow>>();
  #log: Logger;
  #group: string;

  constructor(log: Logger, group: string) {
    this.#log = log;
    this.#group = group;
  }

  /** Flows open now. */
  get size(): number {
    let n = 0;
    for (const flows of this.#flows.values()) n += flows.size;
    return n;
  }

  /** Hands `session`'s datagrams to their flows until it ends. */
  async pump(session: MuxSession): Promise<void> {
    const flows = this.#of(session);
    try {
      for await (const { flowId, payload } of session.datagrams()) {
        const flow = flows.get(flowId);
        if (flow === undefined) continue; // a flow that just ended
        flow.stats.aToB += payload.length;
        flow.socket.send(payload); // the payload is the receiver's own copy
      }
    } finally {
      for (const flow of flows.values()) closeSocket(flow.socket);
      this.#flows.delete(session);
    }
  }

  /** Serves one `udp_flow` stream of `session` until it ends. */
  async serve(stream: MuxStream, session: MuxSession, msg: UdpFlow, app: WantedApp): Promise<void> {
    const name = `${this.#group}/${app.name}`;
    const user = formatHostPort(msg.source);
    if (app.udp === undefined) {
      return stream.reset(`${UNREACHABLE}${app.name} is not a udp app here`);
    }
    let socket: dgram.Socket;
    try {
      socket = await connectLocal(app.local);
    } catch (err) {
      const why = `cannot reach ${formatHostPort(app.local)}: ${errorMessage(err)}`;
      this.#log.warn(`${name}: udp user ${user} turned away: ${why}`);
      return stream.reset(`${UNREACHABLE}${why}`);
    }
    const flows = this.#of(session);
    const stats = app.traffic.open();
    flows.set(msg.flow, { socket, stats });
    let failed: string | undefined;
    socket.on("message", (reply) => {
      try {
        if (session.sendDatagram(msg.flow, reply)) stats.bToA += reply.length;
      } catch {
        // the session ended: the flow's stream fails with it
      }
    });
    socket.on("error", (err) => {
      failed = err.message;
      stream.reset(`local udp socket failed: ${err.message}`.slice(0, 200));
    });
    try {
      await stream.write(STARTED);
      const scratch = new Uint8Array(16);
      while (await stream.read(scratch) !== null) {
        // the server sends nothing on a flow's stream: it only ends it
      }
      stream.close();
    } catch (err) {
      failed ??= errorMessage(err);
    } finally {
      if (flows.get(msg.flow)?.socket === socket) flows.delete(msg.flow);
      closeSocket(socket);
      app.traffic.close(stats);
      this.#log.debug(
        `${name}: udp flow of ${user} ended${failed === undefined ? "" : ` (${failed})`}: ` +
          `${stats.aToB} bytes in, ${stats.bToA} out`,
      );
    }
  }

  #of(session: MuxSession): Map<number, ClientFlow> {
    let flows = this.#flows.get(session);
    if (flows === undefined) {
      flows = new Map();
      this.#flows.set(session, flows);
    }
    return flows;
  }
}

/** A UDP socket connected to `local` (it hears only that address's datagrams). */
function connectLocal(local: HostPort): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type: local.hostname.includes(":") ? "udp6" : "udp4" });
    const failed = (err: Error) => {
      closeSocket(socket);
      reject(err);
    };
    socket.once("error", failed);
    socket.connect(local.port, local.hostname, () => {
      socket.off("error", failed);
      resolve(socket);
    });
  });
}

function closeSocket(socket: dgram.Socket): void {
  try {
    socket.close();
  } catch {
    // already closed
  }
}
