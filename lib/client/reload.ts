/**
 * Live reload of a client's group file: what changed between two versions
 * of the file, watching the file (and SIGHUP) for changes, and keeping a
 * running client's apps in step: added apps are exposed, removed ones
 * closed, changed ones exposed again, untouched ones left alone, so their
 * open connections carry on. A file that no longer validates is reported and
 * the running set is kept.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatHostPort } from "../util/addr.ts";
import type { BurrowClient, Tunnel } from "./client.ts";
import type { AppConfig, ClientConfig } from "../config/group_file.ts";
import { errorMessage, RefusedError } from "../util/errors.ts";

/** What a reload does to the apps. */
export interface AppDiff {
  add: AppConfig[];
  remove: string[];
  change: AppConfig[];
  keep: string[];
}

/** Compares two app lists by name. */
export function diffApps(old: AppConfig[], next: AppConfig[]): AppDiff {
  const before = new Map(old.map((a) => [a.name, a]));
  const diff: AppDiff = { add: [], remove: [], change: [], keep: [] };
  for (const app of next) {
    const was = before.get(app.name);
    if (!was) diff.add.push(app);
    else if (sameApp(was, app)) diff.keep.push(app.name);
    else diff.change.push(app);
    before.delete(app.name);
  }
  diff.remove = [...before.keys()];
  return diff;
}

function sameApp(a: AppConfig, b: AppConfig): boolean {
  return formatHostPort(a.local) === formatHostPort(b.local) && a.remotePort === b.remotePort &&
    a.description === b.description && a.proxyProtocol === b.proxyProtocol &&
    (a.allowFrom ?? []).join(",") === (b.allowFrom ?? []).join(",") && a.balance === b.balance &&
    JSON.stringify(a.health ?? null) === JSON.stringify(b.health ?? null) &&
    JSON.stringify(a.web ?? null) === JSON.stringify(b.web ?? null) &&
    JSON.stringify(a.udp ?? null) === JSON.stringify(b.udp ?? null);
}

/** Keys a running client cannot change without a restart, if they changed. */
export function restartKeys(old: ClientConfig, next: ClientConfig): string[] {
  const out: string[] = [];
  if (old.server.map(formatHostPort).join() !== next.server.map(formatHostPort).join()) {
    out.push("server");
  }
  // A local comparison of two values the user wrote; nothing remote can time it.
  if (old.token.reveal() !== next.token.reveal()) out.push("token");
  if (old.group !== next.group) out.push("group");
  if (old.shared !== next.shared) out.push("shared");
  if (old.heartbeatInterval !== next.heartbeatInterval) out.push("heartbeat_interval");
  if (JSON.stringify(old.tls) !== JSON.stringify(next.tls)) out.push("tls/fingerprint/ca");
  if (old.stateDir !== next.stateDir) out.push("state_dir");
  if (old.proxy?.reveal() !== next.proxy?.reveal()) out.push("proxy");
  return out;
}

/**
 * Calls `onChange` when `file` changes on disk (debounced; editors that save
 * by renaming are seen too, as the folder is watched) or on SIGHUP, until
 * `signal` aborts.
 */
export function watchFile(
  file: string,
  onChange: (why: string) => void,
  signal: AbortSignal,
): void {
  const path = Deno.realPathSync(file);
  const folder = path.slice(0, path.lastIndexOf("/")) || "/";
  const watcher = Deno.watchFs(folder, { recursive: false });
  let timer: ReturnType<typeof setTimeout> | undefined;
  (async () => {
    try {
      for await (const event of watcher) {
        if (!event.paths.some((p) => p === path)) continue;
        clearTimeout(timer);
        timer = setTimeout(() => onChange("the file changed"), 150);
      }
    } catch {
      // the watcher was closed
    }
  })();
  const hup = () => onChange("SIGHUP");
  const hangups = Deno.build.os !== "windows";
  if (hangups) Deno.addSignalListener("SIGHUP", hup);
  signal.addEventListener("abort", () => {
    clearTimeout(timer);
    watcher.close();
    if (hangups) Deno.removeSignalListener("SIGHUP", hup);
  }, { once: true });
}

/** Explicit ports first: the server serves requests in order, so a server-picked port never takes one a sibling names. */
function explicitFirst(apps: AppConfig[]): AppConfig[] {
  return [...apps].sort((a, b) => Number(a.remotePort === 0) - Number(b.remotePort === 0));
}

/** The apps a client runs from its group file, kept in step with the file. */
export class GroupApps {
  #client: BurrowClient;
  #log: Logger;
  #onRefused: (err: RefusedError) => void;
  #tunnels = new Map<string, Promise<Tunnel | undefined>>();

  /** `onRefused` hears refusals at start (which are final: the CLI exits 3). */
  constructor(client: BurrowClient, log: Logger, onRefused: (err: RefusedError) => void) {
    this.#client = client;
    this.#log = log;
    this.#onRefused = onRefused;
  }

  /** Exposes the file's apps at start, explicit ports first (requests are served in order). */
  start(apps: AppConfig[]): void {
    for (const app of explicitFirst(apps)) this.#expose(app, this.#onRefused);
  }

  /** Applies a reload; a refused app is reported and the others carry on. */
  async apply(diff: AppDiff): Promise<void> {
    for (const name of [...diff.remove, ...diff.change.map((a) => a.name)]) {
      const tunnel = await this.#tunnels.get(name);
      this.#tunnels.delete(name);
      await tunnel?.close();
    }
    const report = (err: RefusedError) => this.#log.error(`reload: ${err.message} (${err.code})`);
    for (const app of explicitFirst([...diff.change, ...diff.add])) this.#expose(app, report);
  }

  #expose(app: AppConfig, onRefused: (err: RefusedError) => void): void {
    const exposing = this.#client.expose({
      name: app.name,
      local: formatHostPort(app.local),
      remotePort: app.remotePort,
      ...(app.description === undefined ? {} : { description: app.description }),
      ...(app.allowFrom === undefined ? {} : { allowFrom: app.allowFrom }),
      ...(app.proxyProtocol === undefined ? {} : { proxyProtocol: app.proxyProtocol }),
      ...(app.balance === undefined ? {} : { balance: app.balance }),
      ...(app.health === undefined ? {} : { health: app.health }),
      ...(app.web === undefined ? {} : { web: app.web }),
      ...(app.udp === undefined ? {} : { type: "udp", udpIdleTimeout: app.udp.idleTimeout }),
    }).then((tunnel) => {
      tunnel.closed.then((reason) => reason instanceof RefusedError && onRefused(reason));
      return tunnel;
    }, (err) => {
      if (err instanceof RefusedError) onRefused(err);
      else this.#log.debug(`${app.name}: ${errorMessage(err)}`);
      return undefined;
    });
    this.#tunnels.set(app.name, exposing);
  }
}

/**
 * Reads the group file again and applies it (to `apps`, once they run).
 * Returns the config now in force
 * (the old one when the file does not validate, or keys that need a restart
 * changed: those keep their old values).
 */
export async function reloadGroup(
  current: ClientConfig,
  load: () => Promise<ClientConfig>,
  apps: GroupApps | undefined,
  log: Logger,
  why: string,
): Promise<ClientConfig> {
  let next: ClientConfig;
  try {
    next = await load();
  } catch (err) {
    log.error(`reload (${why}) failed, the running apps are kept: ${errorMessage(err)}`);
    return current;
  }
  const fixed = restartKeys(current, next);
  if (fixed.length > 0) {
    log.warn(`reload (${why}): ${fixed.join(", ")} changed; restart burrow-client to apply that`);
  }
  const diff = diffApps(current.apps, next.apps);
  // Before the first connection nothing runs yet: the apps start from this file.
  await apps?.apply(diff);
  log.info(
    `reloaded ${current.file} (${why}): ${diff.add.length} added, ${diff.remove.length} removed, ` +
      `${diff.change.length} changed, ${diff.keep.length} kept`,
  );
  return { ...current, apps: next.apps };
}
