/**
 * The server's state, without I/O: which groups are live and which session
 * owns each, which apps each group exposes on which public port, which ports
 * the `--ports` ranges allow. The server does the sockets; this module
 * only decides, so it is tested without any.
 *
 * @module
 */

import type { AppEntry } from "../protocol/services.ts";
import type { PortRange } from "../util/addr.ts";
import type { WireRefusalCode } from "../util/errors.ts";

export type { AppEntry };

/**
 * One live group and the session (of type S) that owns it; a shared group
 * has several sessions (`members`, oldest first; `session` is the oldest).
 */
export interface GroupEntry<S> {
  name: string;
  session: S;
  /** Several clients may serve it, each with its own session. */
  shared: boolean;
  members: S[];
  apps: Map<string, AppEntry>;
}

/** Why a port cannot be had. */
export interface PortRefusal {
  code: WireRefusalCode;
  message: string;
}

/** Which kind of port: TCP and UDP ports are claimed apart, from the same ranges. */
export type PortKind = "tcp" | "udp";

/** How many random free ports to try before giving up on a server-picked port. */
const RANDOM_TRIES = 64;

/** Groups, apps and port claims of one server. */
export class Registry<S> {
  #ranges: PortRange[];
  #groups = new Map<string, GroupEntry<S>>();
  #ports = new Map<number, AppEntry>();
  #udpPorts = new Map<number, AppEntry>();

  constructor(ranges: PortRange[]) {
    this.#ranges = ranges;
  }

  /**
   * Replaces the allowed ranges (a reload). Apps already holding a port
   * outside them keep it; only new claims follow the new ranges.
   */
  setRanges(ranges: PortRange[]): void {
    this.#ranges = ranges;
  }

  /** The live group of that name. */
  group(name: string): GroupEntry<S> | undefined {
    return this.#groups.get(name);
  }

  /** Every live group. */
  groups(): IterableIterator<GroupEntry<S>> {
    return this.#groups.values();
  }

  /** How many groups are live. */
  get size(): number {
    return this.#groups.size;
  }

  /**
   * Makes `session` the owner of a group that is not live, or (`shared`)
   * another member of a live shared group. Throws if it cannot be.
   */
  addGroup(name: string, session: S, shared = false): GroupEntry<S> {
    const live = this.#groups.get(name);
    if (live) {
      if (!shared || !live.shared) throw new Error(`group "${name}" is already live`);
      if (!live.members.includes(session)) live.members.push(session);
      return live;
    }
    const entry: GroupEntry<S> = { name, session, shared, members: [session], apps: new Map() };
    this.#groups.set(name, entry);
    return entry;
  }

  /**
   * Takes `session` out of its group if it is still a member (a session
   * replaced by a takeover must not remove its successor). When it was the
   * last member the group goes and its ports are freed: returns the apps
   * that were released.
   */
  removeGroup(name: string, session: S): AppEntry[] {
    const entry = this.#groups.get(name);
    if (!entry || !entry.members.includes(session)) return [];
    entry.members = entry.members.filter((m) => m !== session);
    const next = entry.members[0];
    if (next !== undefined) {
      entry.session = next;
      return [];
    }
    this.#groups.delete(name);
    const apps = [...entry.apps.values()];
    for (const app of apps) this.#portsOf(app).delete(app.port);
    return apps;
  }

  /**
   * Whether a port lies in the allowed ranges (and in `within`, a group's
   * own allowance, when given).
   */
  allowed(port: number, within?: readonly PortRange[]): boolean {
    return inside(port, this.#ranges) && (within === undefined || inside(port, within));
  }

  /**
   * Ports to try binding, best first, for an app asking for `port` (0: any,
   * preferring `hint`, the port it had before a reconnect). A refusal when
   * no port can be had at all.
   */
  candidates(
    port: number,
    hint?: number,
    within?: readonly PortRange[],
    kind: PortKind = "tcp",
  ): number[] | PortRefusal {
    const ports = kind === "udp" ? this.#udpPorts : this.#ports;
    if (port !== 0) {
      if (!this.allowed(port, within)) {
        return {
          code: "port_not_allowed",
          message: within !== undefined && this.allowed(port)
            ? `port ${port} is outside the ports this group may claim`
            : `port ${port} is outside the server's allowed ports`,
        };
      }
      const owner = ports.get(port);
      if (owner) {
        return {
          code: "port_taken",
          message: `${
            kind === "udp" ? "udp " : ""
          }port ${port} is taken by ${owner.group}/${owner.app}`,
        };
      }
      return [port];
    }
    const out: number[] = [];
    if (hint !== undefined && hint !== 0 && this.allowed(hint, within) && !ports.has(hint)) {
      out.push(hint);
    }
    const free = this.#freeList(within, ports);
    for (let i = 0; i < RANDOM_TRIES && free.length > 0; i++) {
      const at = Math.floor(Math.random() * free.length);
      const pick = free[at] as number;
      free[at] = free[free.length - 1] as number;
      free.pop();
      if (pick !== hint) out.push(pick);
    }
    if (out.length === 0) {
      return {
        code: "no_free_port",
        message: within === undefined
          ? "no free port is left in the server's allowed ports"
          : "no free port is left in the ports this group may claim",
      };
    }
    return out;
  }

  /** Records that a group's app holds a port (after the server bound it). */
  claim(
    group: string,
    app: string,
    port: number,
    description?: string,
    kind: PortKind = "tcp",
  ): AppEntry {
    const entry = this.#groups.get(group);
    if (!entry) throw new Error(`group "${group}" is not live`);
    if (entry.apps.has(app)) throw new Error(`app "${group}/${app}" is already exposed`);
    const ports = kind === "udp" ? this.#udpPorts : this.#ports;
    if (ports.has(port)) throw new Error(`${kind} port ${port} is already claimed`);
    const record: AppEntry = { group, app, port, since: new Date() };
    if (description !== undefined) record.description = description;
    if (kind === "udp") record.transport = "udp";
    entry.apps.set(app, record);
    ports.set(port, record);
    return record;
  }

  /**
   * Frees an app's port (only if it is still `only`'s, when given). Returns
   * the released entry, if there was one.
   */
  release(group: string, app: string, only?: AppEntry): AppEntry | undefined {
    const entry = this.#groups.get(group);
    const record = entry?.apps.get(app);
    if (!entry || !record || (only !== undefined && record !== only)) return undefined;
    entry.apps.delete(app);
    this.#portsOf(record).delete(record.port);
    return record;
  }

  /** Allowed ports no app holds, as inclusive ranges in ascending order. */
  freeRanges(within?: readonly PortRange[]): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const port of this.#allowedSorted()) {
      if (this.#ports.has(port) || (within !== undefined && !inside(port, within))) continue;
      const last = out[out.length - 1];
      if (last && last[1] === port - 1) last[1] = port;
      else out.push([port, port]);
    }
    return out;
  }

  #freeList(within: readonly PortRange[] | undefined, ports: Map<number, AppEntry>): number[] {
    return this.#allowedSorted().filter((p) =>
      !ports.has(p) && (within === undefined || inside(p, within))
    );
  }

  #portsOf(entry: AppEntry): Map<number, AppEntry> {
    return entry.transport === "udp" ? this.#udpPorts : this.#ports;
  }

  #allowedSorted(): number[] {
    const set = new Set<number>();
    for (const r of this.#ranges) for (let p = r.from; p <= r.to; p++) set.add(p);
    return [...set].sort((x, y) => x - y);
  }
}

function inside(port: number, ranges: readonly PortRange[]): boolean {
  return ranges.some((r) => port >= r.from && port <= r.to);
}
