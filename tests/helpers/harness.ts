/**
 * End-to-end test harness: starts the real `server.ts` and `client.ts` as
 * processes from group files, waits for their `listening` and `ready` lines,
 * and runs a whole tunnel (server, client, local app) that `await using`
 * stops. It re-exports the pieces it is built from, so a test imports from
 * here alone: processes (`process.ts`), local apps (`apps.ts`), bytes over
 * sockets (`net.ts`), port blocks (`ports.ts`); temp files come from
 * `temp.ts` (nothing is left in /tmp).
 *
 * @module
 */

import { echoApp, type LocalApp } from "./apps.ts";
import { portBlock } from "./ports.ts";
import { Proc } from "./process.ts";
import { makeTempFileSync } from "./temp.ts";

export * from "./apps.ts";
export * from "./net.ts";
export * from "./process.ts";
export { freePort, type PortBlock, portBlock } from "./ports.ts";

/** Options for {@linkcode startServer}. */
export interface ServerProcOptions {
  /** The `--token` flag; without it (or `undefined`), the server has none. */
  token?: string | undefined;
  ports?: string;
  bindPort?: number;
  heartbeatTimeout?: number;
  args?: string[];
  env?: Record<string, string>;
}

/** A running `server.ts`: `await using` stops it. */
export interface ServerProc extends AsyncDisposable {
  proc: Proc;
  /** The control port. */
  port: number;
  /** The CA's fingerprint, unless TLS is off. */
  fingerprint?: string;
}

/** Starts `server.ts` on 127.0.0.1 and waits for its `listening` line. */
export async function startServer(o: ServerProcOptions = {}): Promise<ServerProc> {
  const args = [
    "--bind",
    `127.0.0.1:${o.bindPort ?? 0}`,
    "--public-host",
    "127.0.0.1",
    "--ports",
    o.ports ?? portBlock().spec,
    "--log-level",
    "debug",
  ];
  if (o.token !== undefined) args.push("--token", o.token);
  if (o.heartbeatTimeout !== undefined) {
    args.push("--heartbeat-timeout", String(o.heartbeatTimeout));
  }
  const proc = new Proc("server.ts", [...args, ...(o.args ?? [])], o.env);
  try {
    const m = await proc.stdout.wait(/^listening 127\.0\.0\.1:(\d+)$/);
    // The fingerprint line follows, unless TLS is off.
    const tlsOff = [...(o.args ?? [])].includes("--no-tls");
    const fp = tlsOff
      ? undefined
      : (await proc.stdout.wait(/^fingerprint (sha256:[0-9a-f]{64})$/))[1];
    return {
      proc,
      port: Number(m[1]),
      ...(fp === undefined ? {} : { fingerprint: fp }),
      [Symbol.asyncDispose]: () => proc.stop(),
    };
  } catch (err) {
    await proc.stop();
    throw new Error(`server did not start: ${err}\nstderr:\n${proc.stderr.text}`);
  }
}

/** An app entry for a group file. */
export interface AppSpec {
  name: string;
  local: string;
  remote_port?: number;
  description?: string;
  allow_from?: string[];
  proxy_protocol?: "v1" | "v2";
  balance?: "round_robin" | "least_conn";
  /** Written as a flow map, e.g. `{ tcp: true, interval: 0.2 }`. */
  health?: { tcp?: true; http?: string; interval?: number; fails?: number };
  /** `udp` for a udp app (`tcp` is the default). */
  type?: "tcp" | "udp";
  udp_idle_timeout?: number;
}

/** Writes a group file to a temp dir and returns its path. */
export function groupFile(o: {
  server?: string;
  token?: string;
  group: string;
  shared?: boolean;
  heartbeat_interval?: number;
  proxy?: string;
  apps: AppSpec[];
}): string {
  const lines: string[] = [];
  if (o.server !== undefined) lines.push(`server: ${o.server}`);
  if (o.token !== undefined) lines.push(`token: ${JSON.stringify(o.token)}`);
  lines.push(`group: ${o.group}`);
  if (o.shared !== undefined) lines.push(`shared: ${o.shared}`);
  if (o.heartbeat_interval !== undefined) lines.push(`heartbeat_interval: ${o.heartbeat_interval}`);
  if (o.proxy !== undefined) lines.push(`proxy: ${JSON.stringify(o.proxy)}`);
  lines.push("apps:");
  for (const a of o.apps) {
    lines.push(`  - name: ${a.name}`, `    local: ${a.local}`);
    if (a.remote_port !== undefined) lines.push(`    remote_port: ${a.remote_port}`);
    if (a.description !== undefined) {
      lines.push(`    description: ${JSON.stringify(a.description)}`);
    }
    if (a.allow_from !== undefined) lines.push(`    allow_from: ${JSON.stringify(a.allow_from)}`);
    if (a.proxy_protocol !== undefined) lines.push(`    proxy_protocol: ${a.proxy_protocol}`);
    if (a.balance !== undefined) lines.push(`    balance: ${a.balance}`);
    if (a.health !== undefined) lines.push(`    health: ${JSON.stringify(a.health)}`);
    if (a.type !== undefined) lines.push(`    type: ${a.type}`);
    if (a.udp_idle_timeout !== undefined) lines.push(`    udp_idle_timeout: ${a.udp_idle_timeout}`);
  }
  const path = makeTempFileSync({ prefix: "burrow-group-", suffix: ".yaml" });
  Deno.writeTextFileSync(path, lines.join("\n") + "\n");
  return path;
}

/** Starts `client.ts` with a group file (and extra args). */
export function startClient(
  file: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Proc {
  return new Proc("client.ts", [file, "--log-level", "debug", ...args], env);
}

/** Waits for `ready GROUP/APP HOST:PORT` (`udp://HOST:PORT` with `scheme`) and returns the port. */
export async function readyPort(
  client: Proc,
  group: string,
  app: string,
  from = 0,
  timeoutMs = 15_000,
  scheme = "",
): Promise<number> {
  try {
    const m = await client.stdout.wait(
      new RegExp(`^ready ${group}/${app} ${scheme}127\\.0\\.0\\.1:(\\d+)$`),
      timeoutMs,
      from,
    );
    return Number(m[1]);
  } catch (err) {
    const tail = client.stderr.all.slice(-8).join("\n");
    throw new Error(`${(err as Error).message}\nclient stderr (last lines):\n${tail}`);
  }
}

/** An app in a {@linkcode startTunnel} group: without `local`, it points at the tunnel's app. */
export type TunnelApp = Omit<AppSpec, "local"> & { local?: string };

/** Options for {@linkcode startTunnel}. */
export interface TunnelOptions {
  /** The client's group. */
  group: string;
  /** The group's apps; by default one, named `echo`. */
  apps?: TunnelApp[];
  /** The local app that apps without `local` point at (by default a new echo app); the tunnel closes it. */
  app?: LocalApp;
  /** The group file's token, and the server's unless `server.token` is given (`undefined` for none). */
  token: string;
  /** More options for the server. */
  server?: ServerProcOptions;
}

/**
 * A running server, a client for one group and the local app behind it.
 * `stop()` (or `await using`) stops every client, then the server, then
 * closes the app; a second stop does nothing.
 */
export interface Tunnel extends AsyncDisposable {
  readonly server: { proc: Proc; port: number };
  readonly client: Proc;
  readonly app: LocalApp;
  /** Waits for the client's `ready` line for `app` and returns its public port. */
  port(app: string): Promise<number>;
  /** Starts another client on the same server (same token and apps unless given); `stop()` stops it too. */
  addClient(group: string, o?: { token?: string; apps?: TunnelApp[] }): Proc;
  /** Stops the clients and the server and closes the app. */
  stop(): Promise<void>;
}

/**
 * Starts a local app (an echo app unless `o.app`), a server and a client for
 * `o.group`, without waiting for the client to be ready (see `port`). If the
 * server does not start, whatever was started is stopped before it throws.
 */
export async function startTunnel(o: TunnelOptions): Promise<Tunnel> {
  const stack = new AsyncDisposableStack();
  try {
    const app = o.app ?? echoApp();
    stack.defer(() => app.close());
    const server = await startServer({ token: o.token, ...o.server });
    stack.use(server.proc);
    const apps = o.apps ?? [{ name: "echo" }];
    const addClient = (group: string, c: { token?: string; apps?: TunnelApp[] } = {}): Proc =>
      stack.use(startClient(groupFile({
        server: `127.0.0.1:${server.port}`,
        token: c.token ?? o.token,
        group,
        apps: (c.apps ?? apps).map((a) => ({ ...a, local: a.local ?? app.addr })),
      })));
    const client = addClient(o.group);
    const stop = () => stack.disposeAsync();
    return {
      server,
      client,
      app,
      port: (name) => readyPort(client, o.group, name),
      addClient,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (err) {
    await stack.disposeAsync();
    throw err;
  }
}
