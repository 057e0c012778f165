/**
 * End-to-end test harness: runs the real `server.ts` and `client.ts` as
 * processes, waits for their output lines (never for a fixed time), and
 * provides local apps and byte-exact round trips. Public port blocks are
 * chosen below the kernel's ephemeral range so the tests' own outgoing
 * connections and TIME_WAIT sockets never collide with them.
 *
 * @module
 */

import { CLIENT_PREAMBLE } from "../../lib/protocol/protocol.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const decoder = new TextDecoder();

/** Collects a stream's lines and lets tests wait for one that matches. */
export class Lines {
  readonly all: string[] = [];
  #waiters: Array<{ re: RegExp; from: number; resolve: (m: RegExpMatchArray) => void }> = [];
  #ended = false;
  #endWaiters: Array<() => void> = [];
  readonly done: Promise<void>;

  #reader: ReadableStreamDefaultReader<Uint8Array>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
    this.done = this.#pump();
  }

  /** Stops reading and closes the stream (for a child: its pipe's read end). */
  async cancel(): Promise<void> {
    await this.#reader.cancel();
  }

  async #pump(): Promise<void> {
    let rest = "";
    while (true) {
      let chunk: Uint8Array | undefined;
      try {
        const next = await this.#reader.read();
        if (next.done) break;
        chunk = next.value;
      } catch {
        break; // cancelled
      }
      rest += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        this.#push(rest.slice(0, nl));
        rest = rest.slice(nl + 1);
      }
    }
    if (rest) this.#push(rest);
    this.#ended = true;
    for (const w of this.#endWaiters) w();
  }

  #push(line: string): void {
    this.all.push(line);
    const index = this.all.length - 1;
    for (const w of [...this.#waiters]) {
      const m = index >= w.from ? line.match(w.re) : null;
      if (m) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  }

  /** Text of every line so far. */
  get text(): string {
    return this.all.join("\n");
  }

  /** How many lines so far: pass it as `from` to wait only for newer lines. */
  get count(): number {
    return this.all.length;
  }

  /** Waits for a line (at index >= from) matching `re`; rejects after `timeoutMs` or at EOF. */
  wait(re: RegExp, timeoutMs = 15_000, from = 0): Promise<RegExpMatchArray> {
    for (let i = from; i < this.all.length; i++) {
      const m = (this.all[i] as string).match(re);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(new Error(`no line matching ${re} (${why}); got:\n${this.text}`));
      };
      const timer = setTimeout(() => fail(`${timeoutMs} ms`), timeoutMs);
      const waiter = {
        re,
        from,
        resolve: (m: RegExpMatchArray) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      this.#waiters.push(waiter);
      if (this.#ended) {
        clearTimeout(timer);
        fail("stream ended");
      } else {
        this.#endWaiters.push(() => {
          if (this.#waiters.includes(waiter)) {
            clearTimeout(timer);
            fail("stream ended");
          }
        });
      }
    });
  }
}

/**
 * One state folder for the whole run, for every program the tests start and
 * for servers and clients started in this process: servers share one
 * generated CA there, and clients record it there on first use. The user's
 * own state folder is never touched.
 */
export const SUITE_STATE: string = Deno.makeTempDirSync({ prefix: "burrow-state-" });
Deno.env.set("XDG_STATE_HOME", SUITE_STATE);

/** A running burrow program. */
export class Proc {
  readonly child: Deno.ChildProcess;
  readonly stdout: Lines;
  readonly stderr: Lines;
  readonly status: Promise<Deno.CommandStatus>;

  /** Runs `script` with deno; inside network namespace `netns` when given (via `ip netns exec`). */
  constructor(script: string, args: string[], env: Record<string, string> = {}, netns?: string) {
    const deno = ["run", "-A", "--quiet", `${ROOT}${script}`, ...args];
    this.child = new Deno.Command(netns ? "ip" : Deno.execPath(), {
      args: netns ? ["netns", "exec", netns, Deno.execPath(), ...deno] : deno,
      cwd: ROOT,
      env: { NO_COLOR: "1", XDG_STATE_HOME: SUITE_STATE, ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.stdout = new Lines(this.child.stdout);
    this.stderr = new Lines(this.child.stderr);
    this.status = this.child.status.then(async (s) => {
      await Promise.all([this.stdout.done, this.stderr.done]);
      return s;
    });
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Sends a signal, ignoring a process that has already gone. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.child.kill(signal);
    } catch {
      // already exited
    }
  }

  /** Exit code, waiting at most `timeoutMs`. */
  async exitCode(timeoutMs = 15_000): Promise<number> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`still running after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return (await Promise.race([this.status, timeout])).code;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills (SIGKILL after a grace period if needed) and waits; for `finally` blocks. */
  async stop(): Promise<void> {
    this.kill("SIGCONT");
    this.kill("SIGTERM");
    try {
      await this.exitCode(5_000);
    } catch {
      this.kill("SIGKILL");
      await this.status;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

let blockCounter = 0;
const pid = Deno.pid;

/** A block of public ports: `from`-`to` inclusive, and `spec` as the server's `--ports` takes it. */
export interface PortBlock {
  from: number;
  to: number;
  spec: string;
}

/**
 * A block of `size` public ports for one test, below the ephemeral range,
 * different for every call in this process and spread by pid across runs.
 */
export function portBlock(size = 50): PortBlock {
  const [low] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().split(/\s+/)
    .map(Number) as [number];
  const floor = 20_000;
  const slots = Math.floor((Math.max(low, floor + 1000) - floor) / 100);
  const slot = (pid * 7 + blockCounter++) % slots;
  const from = floor + slot * 100;
  const to = from + Math.min(size, 100) - 1;
  return { from, to, spec: `${from}-${to}` };
}

/** A currently free TCP port on 127.0.0.1 (for a control listener that must be reused). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

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

/** Starts `server.ts` on 127.0.0.1 and waits for its `listening` line. */
export async function startServer(
  o: ServerProcOptions = {},
): Promise<{ proc: Proc; port: number; fingerprint?: string }> {
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
    return { proc, port: Number(m[1]), ...(fp === undefined ? {} : { fingerprint: fp }) };
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
}

/** Writes a group file to a temp dir and returns its path. */
export function groupFile(o: {
  server?: string;
  token?: string;
  group: string;
  heartbeat_interval?: number;
  proxy?: string;
  apps: AppSpec[];
}): string {
  const lines: string[] = [];
  if (o.server !== undefined) lines.push(`server: ${o.server}`);
  if (o.token !== undefined) lines.push(`token: ${JSON.stringify(o.token)}`);
  lines.push(`group: ${o.group}`);
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
  }
  const path = Deno.makeTempFileSync({ prefix: "burrow-group-", suffix: ".yaml" });
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

/** Waits for `ready GROUP/APP HOST:PORT` and returns the port. */
export async function readyPort(
  client: Proc,
  group: string,
  app: string,
  from = 0,
  timeoutMs = 15_000,
): Promise<number> {
  try {
    const m = await client.stdout.wait(
      new RegExp(`^ready ${group}/${app} 127\\.0\\.0\\.1:(\\d+)$`),
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

/** A local app for tests, listening on 127.0.0.1. */
export interface LocalApp {
  port: number;
  addr: string;
  /** Connections accepted so far. */
  accepted: number;
  close(): void;
}

/** A local app that runs `handle` for every connection. */
export function localApp(handle: (conn: Deno.TcpConn) => Promise<void>): LocalApp {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.TcpConn>();
  const app: LocalApp = {
    port: listener.addr.port,
    addr: `127.0.0.1:${listener.addr.port}`,
    accepted: 0,
    close() {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
  (async () => {
    try {
      for await (const conn of listener) {
        app.accepted++;
        conns.add(conn);
        handle(conn).catch(() => {}).finally(() => {
          conns.delete(conn);
          try {
            conn.close();
          } catch { /* closed */ }
        });
      }
    } catch { /* listener closed */ }
  })();
  return app;
}

/** Echoes every byte back, passing on the half-close. */
export function echoApp(): LocalApp {
  return localApp(async (conn) => {
    const buf = new Uint8Array(64 * 1024);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      await writeAll(conn, buf.subarray(0, n));
    }
    await conn.closeWrite();
  });
}

/** Writes every byte. */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Reads until EOF (or `limit` bytes). */
export async function readAll(conn: Deno.Conn, limit = Infinity): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(256 * 1024);
  while (total < limit) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    total += n;
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** Random bytes of any size (getRandomValues caps one call at 64 KiB). */
export function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  for (let off = 0; off < size; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(size, off + 65536)));
  }
  return out;
}

/** SHA-256 as hex. */
export async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Sends `data` through a public port to an echo app, half-closes, reads the
 * echo to EOF, and returns the SHA-256 of what came back.
 */
export async function echoThrough(port: number, data: Uint8Array<ArrayBuffer>): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const [, back] = await Promise.all([
      writeAll(conn, data).then(() => conn.closeWrite()),
      readAll(conn),
    ]);
    return await sha256(back as Uint8Array<ArrayBuffer>);
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** Resolves true once connecting to the port is refused, polling every 50 ms up to `timeoutMs`. */
export async function waitRefused(port: number, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
    } catch (err) {
      if (err instanceof Deno.errors.ConnectionRefused) return true;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/**
 * Connects and resets at once (RST, not FIN), before the server can accept:
 * Deno has no SO_LINGER, but node:net's resetAndDestroy sends a reset.
 */
export async function connectAndReset(port: number): Promise<void> {
  const { connect } = await import("node:net");
  await new Promise<void>((resolve) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.resetAndDestroy();
      resolve();
    });
    socket.on("error", () => resolve());
  });
}

/** The CA the suite's servers share (made by the first server started). */
export function suiteCa(): string {
  return Deno.readTextFileSync(`${SUITE_STATE}/burrow/tls/ca.pem`);
}

/**
 * A raw connection to a server's control port, as a client opens one: TLS
 * against the suite's CA (unless `tls` is false), then the preamble (unless
 * `preamble` is false). For tests that speak the protocol by hand.
 */
export async function dialControl(
  port: number,
  o: { tls?: boolean; preamble?: boolean } = {},
): Promise<Deno.Conn> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  const conn: Deno.Conn = o.tls === false
    ? tcp
    : await Deno.startTls(tcp, { hostname: "burrow-server", caCerts: [suiteCa()] });
  if (o.preamble !== false) await writeAll(conn, CLIENT_PREAMBLE);
  return conn;
}

/**
 * An idle TCP connection to `port` from `source`, another loopback address
 * (127.0.0.2 and up: Linux routes all of 127/8 to lo), so tests can play
 * several hosts. Resolves once connected; `destroy()` closes it.
 */
export async function connectFrom(
  source: string,
  port: number,
): Promise<{ destroy(): void }> {
  const { connect } = await import("node:net");
  return await new Promise((resolve, reject) => {
    const socket = connect(
      { host: "127.0.0.1", port, localAddress: source },
      () => resolve(socket),
    );
    socket.once("error", reject);
  });
}
