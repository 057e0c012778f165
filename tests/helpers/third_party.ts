/**
 * Real third-party programs from Debian, started by a test on a free port in
 * a folder of its own and stopped with it: nginx and HAProxy as consumers of
 * the PROXY protocol, tinyproxy as an HTTP CONNECT proxy and microsocks as a
 * SOCKS5 proxy. Each start waits until the port accepts (polling, never a
 * fixed sleep) and fails with the program's own output if it exits first.
 * {@linkcode missing} says why a program cannot run here, for `ignore`.
 *
 * @module
 */

import { makeTempDir } from "./temp.ts";
const decoder = new TextDecoder();

/** Where each program is installed on Debian. */
export const PROGRAMS = {
  nginx: "/usr/sbin/nginx",
  haproxy: "/usr/sbin/haproxy",
  tinyproxy: "/usr/bin/tinyproxy",
  microsocks: "/usr/bin/microsocks",
  dig: "/usr/bin/dig",
} as const;

/** The Debian package of a program, where it is not named after it. */
const PACKAGES: Partial<Record<keyof typeof PROGRAMS, string>> = { dig: "dnsutils" };

/** A program of {@linkcode PROGRAMS}. */
export type Program = keyof typeof PROGRAMS;

/** Why `program` cannot run here (not installed), or undefined when it can. */
export function missing(program: Program): string | undefined {
  try {
    Deno.statSync(PROGRAMS[program]);
    return undefined;
  } catch {
    return `needs ${program} (Debian package ${PACKAGES[program] ?? program}) at ${
      PROGRAMS[program]
    }`;
  }
}

/** A TCP port on `hostname` that was free a moment ago. */
export function freePort(hostname = "127.0.0.1"): number {
  using l = Deno.listen({ hostname, port: 0 });
  return l.addr.port;
}

/** A running program, stopped (and its folder removed) on dispose. */
export class Daemon implements AsyncDisposable {
  readonly name: string;
  readonly port: number;
  /** The program's folder: its config, logs and pid file. */
  readonly dir: string;
  #child: Deno.ChildProcess;
  #output: Promise<string>;

  private constructor(name: string, port: number, dir: string, child: Deno.ChildProcess) {
    this.name = name;
    this.port = port;
    this.dir = dir;
    this.#child = child;
    this.#output = Promise.all([collect(child.stdout), collect(child.stderr)]).then(
      ([out, err]) => out + err,
    );
  }

  /** Starts `program` with `args` and waits until `port` on `hostname` accepts. */
  static async start(
    program: Program,
    args: string[],
    port: number,
    dir: string,
    hostname = "127.0.0.1",
  ): Promise<Daemon> {
    const child = new Deno.Command(PROGRAMS[program], {
      args,
      cwd: dir,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const daemon = new Daemon(program, port, dir, child);
    try {
      await daemon.#ready(hostname);
    } catch (err) {
      await daemon[Symbol.asyncDispose]();
      throw err;
    }
    return daemon;
  }

  async #ready(hostname: string): Promise<void> {
    let exited = false;
    const status = this.#child.status.then((s) => {
      exited = true;
      return s;
    });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (exited) {
        const s = await status;
        throw new Error(
          `${this.name} exited with ${s.code} before listening:\n${await this.#output}`,
        );
      }
      try {
        const conn = await Deno.connect({ hostname, port: this.port });
        conn.close();
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    throw new Error(`${this.name} did not listen on ${hostname}:${this.port} within 15 s`);
  }

  /** Stops the program and returns everything it printed (stdout, then stderr). */
  async stopAndReadOutput(): Promise<string> {
    await this[Symbol.asyncDispose]();
    return await this.#output;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 5_000);
    await this.#child.status;
    clearTimeout(timer);
    await this.#output;
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  return text;
}

/** nginx accepting the PROXY protocol on IPv4 and IPv6 loopback, with its access log. */
export interface ProxyProtocolNginx extends AsyncDisposable {
  port: number;
  /** Lines of the access log so far: `ADDR:PORT > SERVER_ADDR:SERVER_PORT` each. */
  accessLog(): Promise<string[]>;
}

/**
 * nginx listening with `proxy_protocol` on 127.0.0.1 and [::1]. Each request
 * gets `$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr
 * $proxy_protocol_server_port` as its body, and the access log has one line
 * per request with the same addresses. With `tls` (PEM certificate and key)
 * it speaks HTTPS after the header, as the service of a `type: tls` app.
 */
export async function startProxyProtocolNginx(
  tls?: { cert: string; key: string },
): Promise<ProxyProtocolNginx> {
  const dir = await makeTempDir({ prefix: "burrow-nginx-" });
  const port = freePort();
  if (tls) {
    await Deno.writeTextFile(`${dir}/site.crt`, tls.cert);
    await Deno.writeTextFile(`${dir}/site.key`, tls.key, { mode: 0o600 });
  }
  const ssl = tls ? " ssl" : "";
  const certs = tls
    ? `ssl_certificate ${dir}/site.crt;\n    ssl_certificate_key ${dir}/site.key;`
    : "";
  const conf = `
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 64; }
http {
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  log_format pp '$proxy_protocol_addr:$proxy_protocol_port > $proxy_protocol_server_addr:$proxy_protocol_server_port';
  server {
    listen 127.0.0.1:${port}${ssl} proxy_protocol;
    listen [::1]:${port}${ssl} proxy_protocol;
    ${certs}
    access_log ${dir}/access.log pp;
    location / {
      default_type text/plain;
      return 200 "$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port\\n";
    }
  }
}
`;
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  const daemon = await Daemon.start(
    "nginx",
    ["-p", dir, "-c", `${dir}/nginx.conf`, "-e", `${dir}/error.log`],
    port,
    dir,
  );
  return {
    port,
    accessLog: async () => {
      const text = await Deno.readTextFile(`${dir}/access.log`).catch(() => "");
      return text.split("\n").filter((l) => l !== "");
    },
    [Symbol.asyncDispose]: () => daemon[Symbol.asyncDispose](),
  };
}

/**
 * HAProxy with `accept-proxy` on 127.0.0.1, answering every HTTP request
 * with `SRC:SRC_PORT DST:DST_PORT` as it understood them from the header.
 */
export async function startProxyProtocolHaproxy(): Promise<Daemon> {
  const dir = await makeTempDir({ prefix: "burrow-haproxy-" });
  const port = freePort();
  const conf = `
global
  maxconn 64
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:${port} accept-proxy
  http-request return status 200 content-type text/plain lf-string "%[src] %[src_port] %[dst] %[dst_port]\\n"
`;
  await Deno.writeTextFile(`${dir}/haproxy.cfg`, conf);
  return await Daemon.start("haproxy", ["-db", "-f", `${dir}/haproxy.cfg`], port, dir);
}

/** Basic credentials a proxy requires. */
export interface ProxyCredentials {
  user: string;
  pass: string;
}

/** Where a proxy listens (127.0.0.1 and `port`, free by default) and connects from. */
export interface ProxyPlacement {
  /** The port to listen on; a free one by default. */
  port?: number;
  /** The loopback address outgoing connections come from, e.g. `127.0.0.5`. */
  outgoing?: string;
}

/**
 * tinyproxy as an HTTP CONNECT proxy on 127.0.0.1, requiring `auth` when
 * given. With `LogLevel Info` it prints a line for every CONNECT it serves.
 */
export async function startTinyproxy(
  auth?: ProxyCredentials,
  at: ProxyPlacement = {},
): Promise<Daemon> {
  const dir = await makeTempDir({ prefix: "burrow-tinyproxy-" });
  const port = at.port ?? freePort();
  const lines = [
    `Port ${port}`,
    "Listen 127.0.0.1",
    "Timeout 30",
    "MaxClients 64",
    "Allow 127.0.0.0/8",
    "LogLevel Info",
    // No ConnectPort line: CONNECT may reach any port (the tests' servers use free ones).
  ];
  if (auth) lines.push(`BasicAuth ${auth.user} ${auth.pass}`);
  if (at.outgoing) lines.push(`Bind ${at.outgoing}`);
  await Deno.writeTextFile(`${dir}/tinyproxy.conf`, lines.join("\n") + "\n");
  return await Daemon.start("tinyproxy", ["-d", "-c", `${dir}/tinyproxy.conf`], port, dir);
}

/** microsocks as a SOCKS5 proxy on 127.0.0.1, requiring `auth` when given. */
export async function startMicrosocks(
  auth?: ProxyCredentials,
  at: ProxyPlacement = {},
): Promise<Daemon> {
  const dir = await makeTempDir({ prefix: "burrow-microsocks-" });
  const port = at.port ?? freePort();
  const args = ["-i", "127.0.0.1", "-p", String(port)];
  if (auth) args.push("-u", auth.user, "-P", auth.pass);
  if (at.outgoing) args.push("-b", at.outgoing);
  return await Daemon.start("microsocks", args, port, dir);
}
