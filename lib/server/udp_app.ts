/**
 * One udp app on the server (CONTRACT "UDP apps"): a UDP socket on the
 * public port, and a flow per user address (ip:port).
 *
 * A datagram from a new address opens a flow: a stream on the least loaded
 * mux session of the group's client (waiting for one to be up, as a tcp
 * user does, at most WORK_TIMEOUT_MS), whose header (`udp_flow`) names the
 * flow id, the app and the user. The flow's datagrams wait (a few, bounded)
 * until the client answers that it opened its socket to the local service,
 * then each one is sent as a DATAGRAM frame with the flow id at once; the
 * client's datagrams for the flow come back the same way and go to the user
 * from the public port. A flow ends when it has been idle `idleTimeout`
 * (no datagram either way), when the client ends its stream, when its mux
 * session dies (the user's next datagram opens a new flow on a live one), or
 * when the app closes. Beyond `limits.udp_flows_per_app` (or the group's
 * `limits.udp_flows_per_group`) a new address's datagrams are dropped,
 * counted and logged at most once in a while.
 *
 * @module
 */

import dgram from "node:dgram";
import type { Logger } from "@logtape/logtape";
import type { AppEntry } from "../protocol/services.ts";
import type { TunnelLimits } from "../protocol/protocol.ts";
import type { ServerLimits } from "../config/limits.ts";
import { type Cidr, inRanges } from "../util/cidr.ts";
import { formatHostPort } from "../util/addr.ts";
import type { RareLog } from "../util/rare_log.ts";
import type { JoinStats } from "../tunnel/join.ts";
import type { TrafficCounter } from "../tunnel/traffic.ts";
import type { MuxSession, MuxStream } from "../transport/mux/mod.ts";
import type { UdpCounter, UdpDropCause } from "../dashboard/udp_figures.ts";
import { type MuxWork, started } from "./work_conn.ts";

/** Datagrams a new flow holds while the client opens its socket; more are dropped. */
export const MAX_OPENING_DATAGRAMS = 64;

/** What a udp app needs from the server around it. */
export interface UdpAppServices {
  log: Logger;
  rare: RareLog;
  limits: Pick<ServerLimits, "udpFlowsPerApp" | "udpFlowsPerGroup">;
}

/** What a udp app needs from the session that exposed it. */
export interface UdpAppSession {
  readonly group: string;
  readonly work: Pick<MuxWork, "openFlow" | "flows" | "idle" | "ready">;
  /** The flows of every udp app of the group, together. */
  readonly udpFlows: { count: number };
}

/** One flow: a user address and its stream to the client. */
interface Flow {
  readonly key: string;
  readonly id: number;
  readonly address: string;
  readonly port: number;
  /** Its stream and mux session, once a work connection took it. */
  stream: MuxStream | undefined;
  session: MuxSession | undefined;
  /** Datagrams waiting for a work connection and the client's answer; undefined once it came. */
  pending: Uint8Array[] | undefined;
  lastSeen: number;
  readonly stats: JoinStats;
  ended: boolean;
}

/** How the app is set up. */
export interface UdpAppInit {
  entry: AppEntry;
  socket: dgram.Socket;
  /** The counter its flows (as connections) and bytes go into. */
  traffic: TrafficCounter;
  /** Its datagram figures. */
  counter: UdpCounter;
  idleTimeoutSeconds: number;
  requestedPort: number;
  limits?: TunnelLimits;
  allowFrom?: Cidr[];
  /** The public address users reach, as the flow header names it. */
  publicHost: string;
}

/** An exposed udp app and its flows. */
export class UdpApp {
  readonly entry: AppEntry;
  readonly traffic: TrafficCounter;
  readonly counter: UdpCounter;
  readonly requestedPort: number;
  readonly limits: TunnelLimits;
  readonly idleMs: number;
  #s: UdpAppServices;
  #session: UdpAppSession;
  #socket: dgram.Socket;
  #allowFrom: Cidr[] | undefined;
  #publicHost: string;
  #flows = new Map<string, Flow>();
  #sweeper: ReturnType<typeof setInterval>;
  #closed = false;
  #socketClosed: Promise<void>;

  constructor(services: UdpAppServices, session: UdpAppSession, init: UdpAppInit) {
    this.#s = services;
    this.#session = session;
    this.entry = init.entry;
    this.traffic = init.traffic;
    this.counter = init.counter;
    this.requestedPort = init.requestedPort;
    this.limits = init.limits ?? {};
    this.idleMs = init.idleTimeoutSeconds * 1000;
    this.#socket = init.socket;
    this.#allowFrom = init.allowFrom;
    this.#publicHost = init.publicHost;
    const closed = new Promise<void>((resolve) => this.#socket.once("close", () => resolve()));
    // The socket's "close" comes before its port is really free: wait until it binds again.
    this.#socketClosed = closed.then(() => untilFree(init.publicHost, init.entry.port));
    this.#socket.on("message", (msg, rinfo) => this.#fromUser(msg, rinfo.address, rinfo.port));
    this.#socket.on("error", (err) => {
      this.#s.rare.warn(`udp-socket:${this.#name}`, `${this.#name}: udp socket: ${err.message}`);
    });
    const tick = Math.max(50, Math.min(1000, this.idleMs / 4));
    this.#sweeper = setInterval(() => this.#sweep(), tick);
  }

  /** Flows open now. */
  get flows(): number {
    return this.#flows.size;
  }

  /** Closes the port and ends every flow; resolves once the port is free again. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      clearInterval(this.#sweeper);
      for (const flow of [...this.#flows.values()]) this.#end(flow, "the app closed");
      try {
        this.#socket.close();
      } catch {
        // already closed
      }
    }
    return this.#socketClosed;
  }

  get #name(): string {
    return `${this.entry.group}/${this.entry.app}`;
  }

  #fromUser(msg: Uint8Array, address: string, port: number): void {
    if (this.#closed) return;
    const key = `${address}|${port}`;
    const flow = this.#flows.get(key) ?? this.#open(key, address, port);
    if (flow === undefined) return;
    flow.lastSeen = performance.now();
    if (flow.pending !== undefined) {
      if (flow.pending.length >= MAX_OPENING_DATAGRAMS) return this.#drop("queue_full");
      flow.pending.push(msg);
      return;
    }
    this.#forward(flow, msg);
  }

  #forward(flow: Flow, msg: Uint8Array): void {
    let sent = false;
    try {
      sent = flow.session?.sendDatagram(flow.id, msg) ?? false;
    } catch {
      // the session ended: the flow ends with its stream
    }
    if (!sent) return this.#drop("queue_full");
    flow.stats.aToB += msg.length;
    this.counter.datagramsIn++;
  }

  /** Opens a flow for a new address, or drops its datagram (and says why, rarely). */
  #open(key: string, address: string, port: number): Flow | undefined {
    if (this.#allowFrom !== undefined && !inRanges(address, this.#allowFrom)) {
      this.#drop("allow_from");
      return undefined;
    }
    const { udpFlowsPerApp, udpFlowsPerGroup } = this.#s.limits;
    if (this.#flows.size >= udpFlowsPerApp) {
      this.#drop("app_flow_limit");
      this.#s.rare.warn(
        `udp-app-flows:${this.#name}`,
        `${this.#name}: dropped datagrams from a new address ${address}: the app has its ${udpFlowsPerApp} udp flows open (limits.udp_flows_per_app)`,
      );
      return undefined;
    }
    if (this.#session.udpFlows.count >= udpFlowsPerGroup) {
      this.#drop("group_flow_limit");
      this.#s.rare.warn(
        `udp-group-flows:${this.entry.group}`,
        `${this.#name}: dropped datagrams from a new address ${address}: group ${this.entry.group} has its ${udpFlowsPerGroup} udp flows open (limits.udp_flows_per_group)`,
      );
      return undefined;
    }
    const flow: Flow = {
      key,
      id: this.#session.work.flows.nextId(),
      address,
      port,
      stream: undefined,
      session: undefined,
      pending: [],
      lastSeen: performance.now(),
      stats: this.traffic.open(),
      ended: false,
    };
    this.#flows.set(key, flow);
    this.#session.udpFlows.count++;
    this.#start(flow).catch(() => {});
    return flow;
  }

  /**
   * Opens the flow's stream on a work connection (waiting, at most
   * WORK_TIMEOUT_MS, if none is up yet, as a tcp user would), then watches it.
   */
  async #start(flow: Flow): Promise<void> {
    const work = this.#session.work;
    let opened: { stream: MuxStream; session: MuxSession } | string;
    if (work.idle === 0 && !await work.ready()) {
      opened = "no work connection came up in time";
    } else if (flow.ended) {
      return;
    } else {
      try {
        opened = work.openFlow({
          type: "udp_flow",
          flow: flow.id,
          app: this.entry.app,
          source: { hostname: flow.address, port: flow.port },
          destination: { hostname: this.#publicHost, port: this.entry.port },
        });
      } catch (err) {
        opened = (err as Error).message;
      }
    }
    if (typeof opened === "string") {
      for (const _ of flow.pending ?? []) this.#drop("no_work_connection");
      this.#s.rare.warn(
        `udp-no-work:${this.#name}`,
        `${this.#name}: dropped datagrams from ${flow.address}: ${opened}`,
      );
      return this.#end(flow, opened);
    }
    flow.stream = opened.stream;
    flow.session = opened.session;
    if (flow.ended) return opened.stream.reset("the flow ended");
    work.flows.add(flow.id, opened.session, (payload) => this.#toUser(flow, payload));
    await this.#watch(flow, opened.stream);
  }

  /** Waits for the client's answer, sends what waited, then waits for the stream's end. */
  async #watch(flow: Flow, stream: MuxStream): Promise<void> {
    let why = "the client ended it";
    try {
      await started(stream);
      const pending = flow.pending ?? [];
      flow.pending = undefined;
      for (const msg of pending) this.#forward(flow, msg);
      const scratch = new Uint8Array(16);
      while (!flow.ended && await stream.read(scratch) !== null) {
        // the client sends nothing more on a flow's stream
      }
    } catch (err) {
      why = (err as Error).message;
    }
    if (!flow.ended) {
      this.#s.log.debug(`${this.#name}: udp flow of ${flow.address}:${flow.port} ended: ${why}`);
    }
    this.#end(flow, why);
  }

  #toUser(flow: Flow, payload: Uint8Array): void {
    if (flow.ended) return;
    flow.lastSeen = performance.now();
    flow.stats.bToA += payload.length;
    this.counter.datagramsOut++;
    // The payload is a view into the mux read buffer: the socket gets its own copy.
    this.#socket.send(payload.slice(), flow.port, flow.address, (err) => {
      if (err) this.#s.rare.warn(`udp-send:${this.#name}`, `${this.#name}: ${err.message}`);
    });
  }

  #sweep(): void {
    const now = performance.now();
    for (const flow of [...this.#flows.values()]) {
      if (now - flow.lastSeen < this.idleMs) continue;
      this.#s.log.debug(
        `${this.#name}: udp flow of ${
          formatHostPort({ hostname: flow.address, port: flow.port })
        } idle for ${this.idleMs / 1000}s: ended`,
      );
      this.#end(flow, "idle");
    }
  }

  #end(flow: Flow, why: string): void {
    if (flow.ended) return;
    flow.ended = true;
    if (this.#flows.get(flow.key) === flow) {
      this.#flows.delete(flow.key);
      this.#session.udpFlows.count--;
    }
    this.#session.work.flows.delete(flow.id);
    this.traffic.close(flow.stats);
    flow.stream?.reset(why.slice(0, 200));
  }

  #drop(cause: UdpDropCause): void {
    this.counter.dropped[cause]++;
  }
}

/**
 * Binds the UDP port an `expose` asked for (`port`; 0: the first of
 * `candidates` that binds), or says why not, as `bindPublicPort` does for TCP.
 */
export async function bindUdpPort(
  host: string,
  port: number,
  candidates: number[],
  unbindable: (why: string) => void,
): Promise<
  { port: number; socket: dgram.Socket } | {
    code: "port_taken" | "port_not_allowed" | "no_free_port";
    message: string;
  }
> {
  for (const candidate of candidates) {
    try {
      return { port: candidate, socket: await bindOne(host, candidate) };
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== "EADDRINUSE") {
        const why = `udp port ${candidate} cannot be bound on the server (${
          code ?? (err as Error).message
        })`;
        unbindable(why);
        if (port !== 0) return { code: "port_not_allowed", message: why };
        continue;
      }
      if (port !== 0) {
        return {
          code: "port_taken",
          message: `udp port ${port} is in use on the server host (address in use)`,
        };
      }
    }
  }
  return {
    code: "no_free_port",
    message: "no free udp port could be bound in the server's allowed ports",
  };
}

/** Resolves once `host:port` can be bound again (at most about 2 s), leaving it free. */
async function untilFree(host: string, port: number): Promise<void> {
  const deadline = performance.now() + 2_000;
  while (true) {
    try {
      const probe = await bindOne(host, port);
      await new Promise<void>((resolve) => probe.close(() => resolve()));
      return;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== "EADDRINUSE" || performance.now() > deadline) return;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}

function bindOne(host: string, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type: host.includes(":") ? "udp6" : "udp4" });
    const failed = (err: Error) => {
      try {
        socket.close();
      } catch {
        // never bound
      }
      reject(err);
    };
    socket.once("error", failed);
    socket.bind(port, host, () => {
      socket.off("error", failed);
      resolve(socket);
    });
  });
}
