/**
 * Health checks of one app's local service, run by the client: every
 * `interval` seconds a TCP connect (`tcp`) or an HTTP GET of a path that
 * must answer 2xx (`http`). After `fails` failures in a row the app is
 * unhealthy; one success makes it healthy again. Each change is reported
 * (the session tells the server, which then sends the replica no users).
 *
 * `HealthState` is the counting alone (tested without I/O); `HealthCheck`
 * runs the probes.
 *
 * @module
 */

import { formatHostPort, type HostPort } from "../util/addr.ts";
import { closeQuietly, dial, netReason } from "../transport/net.ts";
import {
  DEFAULT_HEALTH_FAILS,
  DEFAULT_HEALTH_INTERVAL,
  type HealthOptions,
} from "../config/health.ts";

export type { HealthOptions };

/** The counting of a health check: failures in a row against the threshold. */
export class HealthState {
  #fails: number;
  #streak = 0;
  healthy = true;
  /** Why the last check failed. */
  reason: string | undefined;

  constructor(fails: number) {
    this.#fails = fails;
  }

  /** Records one check's result (undefined: passed; else why not). True if the state changed. */
  record(failure: string | undefined): boolean {
    if (failure === undefined) {
      this.#streak = 0;
      this.reason = undefined;
      if (this.healthy) return false;
      this.healthy = true;
      return true;
    }
    this.#streak++;
    this.reason = failure;
    if (!this.healthy || this.#streak < this.#fails) return false;
    this.healthy = false;
    return true;
  }
}

/** How long one probe may take at most. */
const PROBE_TIMEOUT_MS = 5_000;

/** One probe of `local`: undefined if it passed, or why it failed. */
export async function probe(local: HostPort, health: HealthOptions): Promise<string | undefined> {
  const timeoutMs = Math.min(PROBE_TIMEOUT_MS, (health.interval ?? DEFAULT_HEALTH_INTERVAL) * 1000);
  let conn: Deno.TcpConn;
  try {
    conn = await dial(local, timeoutMs);
  } catch (err) {
    return `cannot reach ${formatHostPort(local)}: ${netReason(err)}`;
  }
  try {
    if (health.http === undefined) return undefined;
    return await httpProbe(conn, local, health.http, timeoutMs);
  } finally {
    closeQuietly(conn);
  }
}

/** A GET of `path` on `conn`: undefined for a 2xx status line, else why not. */
async function httpProbe(
  conn: Deno.TcpConn,
  local: HostPort,
  path: string,
  timeoutMs: number,
): Promise<string | undefined> {
  const host = formatHostPort(local);
  const request = `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: burrow-health\r\n` +
    `Connection: close\r\n\r\n`;
  const timer = setTimeout(() => closeQuietly(conn), timeoutMs);
  try {
    await conn.write(new TextEncoder().encode(request));
    const buf = new Uint8Array(512);
    let got = 0;
    let line = -1;
    while (line < 0 && got < buf.length) {
      const n = await conn.read(buf.subarray(got));
      if (n === null) break;
      got += n;
      line = buf.subarray(0, got).indexOf(10);
    }
    const status = new TextDecoder().decode(buf.subarray(0, line < 0 ? got : line));
    const code = /^HTTP\/1\.[01] (\d{3})/.exec(status)?.[1];
    if (code === undefined) return `GET ${path} on ${host}: no HTTP answer`;
    return code.startsWith("2") ? undefined : `GET ${path} on ${host} answered ${code}`;
  } catch (err) {
    return `GET ${path} on ${host}: ${netReason(err)}`;
  } finally {
    clearTimeout(timer);
  }
}

/** The checks of one app, every `interval` seconds until stopped. */
export class HealthCheck {
  readonly state: HealthState;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #local: HostPort;
  #health: HealthOptions;
  #changed: (healthy: boolean, reason: string | undefined) => void;

  /** Starts checking at once; `changed` hears each change of state. */
  constructor(
    local: HostPort,
    health: HealthOptions,
    changed: (healthy: boolean, reason: string | undefined) => void,
  ) {
    this.#local = local;
    this.#health = health;
    this.#changed = changed;
    this.state = new HealthState(health.fails ?? DEFAULT_HEALTH_FAILS);
    this.#tick();
  }

  /** Stops checking. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #tick(): Promise<void> {
    const failure = await probe(this.#local, this.#health);
    if (this.#stopped) return;
    if (this.state.record(failure)) this.#changed(this.state.healthy, this.state.reason);
    const ms = (this.#health.interval ?? DEFAULT_HEALTH_INTERVAL) * 1000;
    this.#timer = setTimeout(() => this.#tick(), ms);
  }
}
