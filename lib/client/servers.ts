/**
 * The servers a client may reach, in the order it tries them: each
 * configured `HOST:PORT` (a cluster's nodes, say), and for a name with
 * several addresses each of its addresses, looked up afresh on every pass so
 * a changed DNS record is seen. The client stays on the server it reached;
 * when that one goes it moves on to the next, so a dead node is not the
 * first one tried again. Through a proxy, names are left for the proxy to
 * resolve.
 *
 * @module
 */

import { lookup as dnsLookup } from "node:dns/promises";
import { formatHostPort, type HostPort } from "../util/addr.ts";
import { parseIp } from "../util/cidr.ts";

/** One place to dial: the server as configured, and the address to connect to. */
export interface ServerCandidate {
  /** As configured: what TLS verifies and `ready` lines show. */
  name: HostPort;
  /** Where to connect: an address of `name`, or `name` itself. */
  at: HostPort;
}

/** Looks up every address of a host name; rejects when it has none. */
export type Lookup = (hostname: string) => Promise<string[]>;

/** The system resolver (`/etc/hosts`, then DNS), every address in its order. */
export const systemLookup: Lookup = async (hostname) =>
  (await dnsLookup(hostname, { all: true, verbatim: true })).map((a) => a.address);

/** At most this many addresses of one name are tried in a pass. */
const MAX_ADDRESSES_PER_NAME = 8;

/** Walks the configured servers round and round, one candidate at a time. */
export class ServerList {
  readonly configured: readonly HostPort[];
  #lookup: Lookup | undefined;
  #pass: ServerCandidate[] = [];
  #next = 0;
  #current: ServerCandidate;
  #startAfter: string | undefined;

  /** `lookup` undefined: names are dialled as they are (a proxy resolves them). */
  constructor(configured: readonly HostPort[], lookup: Lookup | undefined) {
    if (configured.length === 0) throw new Error("a client needs at least one server");
    this.configured = configured;
    this.#lookup = lookup;
    this.#current = { name: configured[0]!, at: configured[0]! };
  }

  /** The candidate tried last (or the first configured server before any try). */
  get current(): ServerCandidate {
    return this.#current;
  }

  /** Candidates in the pass under way (known once the first one of it was taken). */
  get passSize(): number {
    return this.#pass.length;
  }

  /** The next candidate, starting a new pass (with fresh lookups) after the last one. */
  async next(): Promise<ServerCandidate> {
    if (this.#next >= this.#pass.length) {
      this.#pass = await this.#expand();
      this.#next = 0;
    }
    this.#current = this.#pass[this.#next++]!;
    return this.#current;
  }

  /**
   * Ends the pass under way: the next one (with fresh lookups) starts with
   * the candidate after the current one and ends with the current one, so a
   * server just lost is tried last.
   */
  moveOn(): void {
    this.#startAfter = keyOf(this.#current);
    this.#next = this.#pass.length;
  }

  /** True when the candidate just taken was the last of its pass. */
  get passDone(): boolean {
    return this.#next >= this.#pass.length;
  }

  async #expand(): Promise<ServerCandidate[]> {
    const out: ServerCandidate[] = [];
    for (const name of this.configured) {
      for (const at of await this.#addresses(name)) out.push({ name, at });
    }
    const after = this.#startAfter === undefined
      ? -1
      : out.findIndex((c) => keyOf(c) === this.#startAfter);
    this.#startAfter = undefined;
    return after < 0 ? out : [...out.slice(after + 1), ...out.slice(0, after + 1)];
  }

  async #addresses(name: HostPort): Promise<HostPort[]> {
    if (this.#lookup === undefined || parseIp(name.hostname) !== undefined) return [name];
    try {
      const found = [...new Set(await this.#lookup(name.hostname))];
      if (found.length === 0) return [name];
      return found.slice(0, MAX_ADDRESSES_PER_NAME).map((hostname) => ({
        hostname,
        port: name.port,
      }));
    } catch {
      // Not found now: dial the name as it is, so the error the user sees is the dial's own.
      return [name];
    }
  }
}

/** `name` as a log shows it: `HOST:PORT`, with the address when it differs. */
export function describeCandidate(candidate: ServerCandidate): string {
  const name = formatHostPort(candidate.name);
  return candidate.at === candidate.name ? name : `${name} (${formatHostPort(candidate.at)})`;
}

function keyOf(candidate: ServerCandidate): string {
  return `${formatHostPort(candidate.name)} ${formatHostPort(candidate.at)}`;
}
