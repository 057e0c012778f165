/**
 * A session's udp apps: exposing one (a UDP port claim, apart from TCP's
 * but from the same `ports` ranges and with the same refusals), closing one,
 * and closing them all when the session ends. The session keeps its tcp and
 * web apps itself; this keeps the udp side out of it.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatHostPort, type PortRange } from "../util/addr.ts";
import { parseCidrList } from "../util/cidr.ts";
import type { WireRefusalCode } from "../util/errors.ts";
import type { Expose } from "../protocol/protocol.ts";
import type { ServerMonitor } from "../dashboard/monitor.ts";
import type { Registry } from "./registry.ts";
import { bindUdpPort, UdpApp, type UdpAppServices, type UdpAppSession } from "./udp_app.ts";

export type { UdpApp, UdpAppServices };

/** What the udp apps need from the server. */
export interface UdpAppsServices extends UdpAppServices {
  // deno-lint-ignore no-explicit-any
  registry: Registry<any>;
  publicHost: string;
  log: Logger;
  monitor: Pick<ServerMonitor, "appExposed" | "appClosed" | "udpCounter">;
}

/** The answer to a udp `expose`: the port, or a refusal. */
export type UdpExposeAnswer = { port: number } | { code: WireRefusalCode; message: string };

/** One session's udp apps. */
export class SessionUdpApps {
  /** The flows of all of them together (the group's bound). */
  readonly udpFlows = { count: 0 };
  #apps = new Map<string, UdpApp>();
  #s: UdpAppsServices;
  #session: Omit<UdpAppSession, "udpFlows"> & { readonly shared: boolean };

  constructor(
    services: UdpAppsServices,
    session: Omit<UdpAppSession, "udpFlows"> & { readonly shared: boolean },
  ) {
    this.#s = services;
    this.#session = session;
  }

  /** How many are exposed. */
  get size(): number {
    return this.#apps.size;
  }

  /** Whether an app of that name is one of them. */
  has(name: string): boolean {
    return this.#apps.has(name);
  }

  /** The apps exposed now. */
  list(): UdpApp[] {
    return [...this.#apps.values()];
  }

  /** Exposes a udp app (`msg.udp` is set), within the group's `ports` allowance if it has one. */
  async expose(msg: Expose, within?: readonly PortRange[]): Promise<UdpExposeAnswer> {
    const { app: name, port } = msg;
    const group = this.#session.group;
    if (msg.udp === undefined) return { code: "bad_request", message: "not a udp app" };
    if (msg.web !== undefined) return { code: "bad_request", message: "an app is web or udp" };
    if (this.#session.shared) {
      return {
        code: "bad_request",
        message: `udp app ${group}/${name}: a shared group cannot serve udp apps`,
      };
    }
    const allowFrom = msg.allowFrom === undefined ? undefined : parseCidrList(msg.allowFrom);
    if (typeof allowFrom === "string") {
      return { code: "bad_request", message: `allow_from: ${allowFrom}` };
    }
    const registry = this.#s.registry;
    const candidates = registry.candidates(port, msg.hint, within, "udp");
    if (!Array.isArray(candidates)) return candidates;
    const bound = await bindUdpPort(this.#s.publicHost, port, candidates, (why) => {
      this.#s.log.error(`${group}/${name}: ${why}`);
    });
    if ("code" in bound) return bound;
    let entry;
    try {
      entry = registry.claim(group, name, bound.port, msg.description, "udp");
    } catch (err) {
      bound.socket.close(); // the group ended or the app appeared while binding
      return { code: "app_exists", message: (err as Error).message };
    }
    const app = new UdpApp(this.#s, { ...this.#session, udpFlows: this.udpFlows }, {
      entry,
      socket: bound.socket,
      traffic: this.#s.monitor.appExposed(group, name),
      counter: this.#s.monitor.udpCounter(group, name),
      idleTimeoutSeconds: msg.udp.idleTimeout,
      requestedPort: port,
      publicHost: this.#s.publicHost,
      ...(msg.limits === undefined ? {} : { limits: msg.limits }),
      ...(allowFrom === undefined ? {} : { allowFrom }),
    });
    this.#apps.set(name, app);
    this.#s.log.info(
      `${group}/${name} is live on udp://${
        formatHostPort({ hostname: this.#s.publicHost, port: bound.port })
      }`,
    );
    return { port: bound.port };
  }

  /** Closes one (releasing its port claim); resolves once its port is free. False if none. */
  async unexpose(name: string): Promise<boolean> {
    const app = this.#apps.get(name);
    if (app === undefined) return false;
    this.#apps.delete(name);
    this.#s.registry.release(this.#session.group, name, app.entry);
    await this.#close(app);
    this.#s.log.info(`${this.#session.group}/${name} closed; udp port ${app.entry.port} is free`);
    return true;
  }

  /**
   * Closes them all as the session ends and releases their claims: the
   * ports freed (`udp PORT`), and a promise that resolves once they are.
   */
  closeAll(): { freed: string[]; closed: Promise<void> } {
    const apps = this.list();
    this.#apps.clear();
    const freed = apps.flatMap((app) =>
      this.#s.registry.release(this.#session.group, app.entry.app, app.entry)
        ? [`udp ${app.entry.port}`]
        : []
    );
    return { freed, closed: Promise.all(apps.map((app) => this.#close(app))).then(() => {}) };
  }

  #close(app: UdpApp): Promise<void> {
    const closed = app.close();
    this.#s.monitor.appClosed(this.#session.group, app.entry.app, app.traffic);
    return closed;
  }
}
