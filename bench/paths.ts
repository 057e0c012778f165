/**
 * The tunnels the comparison benchmark drives, each started the same way:
 * given the local services to expose and the address the tunnel's client
 * should dial for its server (the server itself, or a delay relay in front
 * of it), start the real programs and report the public port of each
 * service once it answers. burrow runs from source (TLS, the default, or
 * `--no-tls`); rathole and bore run when their binaries are on PATH or in
 * `/tmp/peers/bin` (built by hand from their public sources, never
 * committed), plaintext, as their users run them by default.
 *
 * @module
 */

import { Child } from "./child.ts";
import { connect } from "./phases.ts";

/** Local services by name (echo, discard, source, redis...) and their ports. */
export type Services = Record<string, number>;

/** A running tunnel (or the direct path) under test. */
export interface Path {
  readonly name: string;
  /** Public port of each service. */
  readonly ports: Services;
  /** The processes the path runs (server and client side), for memory figures. */
  readonly children: Child[];
  stop(): Promise<void>;
}

/** How a path's client reaches its server: a port on 127.0.0.1 to dial instead of the server's. */
export type Via = (serverPort: number) => Promise<{ hostname: string; port: number }>;

const direct: Via = (port) => Promise.resolve({ hostname: "127.0.0.1", port });

/** The direct path: the services themselves. */
export function directPath(services: Services): Path {
  return { name: "direct", ports: { ...services }, children: [], stop: () => Promise.resolve() };
}

/** A free TCP port on 127.0.0.1 (bound and released; fine for a benchmark). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Finds a peer binary on PATH or in /tmp/peers/bin. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/tmp/peers/bin"];
  for (const dir of dirs) {
    try {
      if (dir && Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return undefined;
}

/** Waits until each public port answers a one-byte probe of its service, or throws. */
async function waitServing(ports: Services, timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (const [name, port] of Object.entries(ports)) {
    let backoff = 20;
    while (true) {
      if (await probe(name, port)) break;
      if (performance.now() > deadline) throw new Error(`${name} on port ${port} never answered`);
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(200, backoff * 2);
    }
  }
}

/** True when the service behind `port` answers as its kind does. */
async function probe(name: string, port: number): Promise<boolean> {
  let conn: Deno.TcpConn | undefined;
  const timer = setTimeout(() => conn?.close(), 2_000);
  try {
    conn = await connect(port);
    const buf = new Uint8Array(8);
    if (name === "discard") {
      await conn.closeWrite();
      return (await conn.read(buf)) !== null; // the byte count comes back
    }
    const ask = name === "redis"
      ? new TextEncoder().encode("PING\r\n")
      : name === "source"
      ? new Uint8Array(8).fill(0).map((_, i) => i === 7 ? 1 : 0)
      : new Uint8Array([7]);
    await conn.write(ask);
    return (await conn.read(buf)) !== null;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* closed by the timer */ }
  }
}

/** burrow's server and client from source; TLS on unless `tls` is false. */
export async function burrowPath(
  services: Services,
  options: { tls: boolean; stateDir: string; ports: string; via?: Via; name?: string },
): Promise<Path> {
  const token = crypto.randomUUID().replaceAll("-", "");
  const children: Child[] = [];
  const stop = () => Promise.all(children.map((c) => c.stop())).then(() => {});
  try {
    const server = new Child("server", [
      ...["run", "-A", "server.ts", "--bind", "127.0.0.1:0", "--token", token],
      ...["--ports", options.ports, "--public-host", "127.0.0.1", "--log-level", "warning"],
      ...(options.tls ? ["--state-dir", options.stateDir] : ["--no-tls"]),
    ]);
    children.push(server);
    const control = Number((await server.waitLine(/^listening 127\.0\.0\.1:(\d+)$/))[1]);
    const fingerprint = options.tls
      ? (await server.waitLine(/^fingerprint (sha256:[0-9a-f]{64})$/))[1]
      : undefined;
    const at = await (options.via ?? direct)(control);
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "burrow-bench-" });
    const file = `${dir}/bench.yaml`;
    const apps = Object.entries(services).map(([name, port]) =>
      `  - name: ${name}\n    local: 127.0.0.1:${port}\n`
    );
    await Deno.writeTextFile(
      file,
      `server: ${at.hostname}:${at.port}\ntoken: ${token}\ngroup: bench\n` +
        (fingerprint === undefined ? "tls: false\n" : `fingerprint: ${fingerprint}\n`) +
        "apps:\n" + apps.join(""),
    );
    const client = new Child("client", ["run", "-A", "client.ts", file, "--log-level", "warning"]);
    children.push(client);
    const ports: Services = {};
    try {
      for (const _ of Object.keys(services)) {
        const [, app, port] = await client.waitLine(/^ready bench\/([a-z]+) [0-9.]+:(\d+)$/);
        ports[app!] = Number(port);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    const name = options.name ?? (options.tls ? "burrow (TLS)" : "burrow --no-tls");
    return { name, ports, children, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The runtime's floor: two bare Deno relays in a row per service
 * (`floor_relay.ts`), where burrow's server and client stand.
 */
export async function floorPath(services: Services): Promise<Path> {
  const children: Child[] = [];
  const stop = () => Promise.all(children.map((c) => c.stop())).then(() => {});
  const relay = async (name: string, target: number) => {
    const child = new Child(
      `floor-${name}`,
      ["run", "--allow-net=127.0.0.1", "bench/floor_relay.ts", String(target)],
      true,
    );
    children.push(child);
    return Number((await child.waitLine(/^floor (\d+)$/))[1]);
  };
  try {
    const ports: Services = {};
    for (const [name, port] of Object.entries(services)) {
      ports[name] = await relay(name, await relay(name, port));
    }
    return { name: "deno floor (2 bare relays)", ports, children, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** rathole 0.5 with one plaintext TCP service per local service. */
export async function ratholePath(
  binary: string,
  services: Services,
  via: Via = direct,
): Promise<Path> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "burrow-bench-rathole-" });
  const token = crypto.randomUUID();
  const control = freePort();
  const ports: Services = {};
  let server = `[server]\nbind_addr = "127.0.0.1:${control}"\ndefault_token = "${token}"\n`;
  const at = await via(control);
  let client = `[client]\nremote_addr = "${at.hostname}:${at.port}"\ndefault_token = "${token}"\n`;
  for (const [name, port] of Object.entries(services)) {
    ports[name] = freePort();
    server += `[server.services.${name}]\nbind_addr = "127.0.0.1:${ports[name]}"\nnodelay = true\n`;
    client += `[client.services.${name}]\nlocal_addr = "127.0.0.1:${port}"\nnodelay = true\n`;
  }
  await Deno.writeTextFile(`${dir}/server.toml`, server);
  await Deno.writeTextFile(`${dir}/client.toml`, client);
  const children = [
    new Child("rathole-server", ["--server", `${dir}/server.toml`], false, binary),
    new Child("rathole-client", ["--client", `${dir}/client.toml`], false, binary),
  ];
  const stop = async () => {
    await Promise.all(children.map((c) => c.stop()));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await waitServing(ports);
    return { name: "rathole", ports, children, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * bore 0.5: one server, one `bore local` per service. Its control port is
 * fixed (0.0.0.0:7835, no option to move it), so one bore runs at a time and
 * no relay can sit in front of it on the same machine.
 */
export async function borePath(
  binary: string,
  services: Services,
  range: { min: number; max: number },
): Promise<Path> {
  const secret = crypto.randomUUID();
  const children: Child[] = [];
  const stop = () => Promise.all(children.map((c) => c.stop())).then(() => {});
  try {
    children.push(
      new Child(
        "bore-server",
        [
          ...["server", "--min-port", String(range.min), "--max-port", String(range.max)],
          ...["--secret", secret],
        ],
        false,
        binary,
      ),
    );
    await waitPort("127.0.0.1", 7835);
    const ports: Services = {};
    for (const [name, port] of Object.entries(services)) {
      const child = new Child(
        `bore-${name}`,
        [
          ...["local", String(port), "--local-host", "127.0.0.1", "--to", "127.0.0.1"],
          ...["--secret", secret],
        ],
        false,
        binary,
      );
      children.push(child);
      // bore logs (tracing) "listening at HOST:PORT" on stdout.
      const [, remote] = await child.waitLine(/listening at [^\s:]+:(\d+)/);
      ports[name] = Number(remote);
    }
    return { name: "bore", ports, children, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function waitPort(hostname: string, port: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      (await Deno.connect({ hostname, port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`nothing listens on ${hostname}:${port}`);
}
