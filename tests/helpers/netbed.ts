/**
 * A small internet in network namespaces, for tests that cross a real NAT.
 *
 * ```
 *   user 203.0.113.2 ─┐
 *   pub  203.0.113.1 ─┼─ br0 (in "inet") ─┬─ 203.0.113.11 r1 (MASQUERADE) 198.51.100.1 ── h1 198.51.100.2
 *                     │                   └─ 203.0.113.12 r2 (MASQUERADE) 198.51.100.1 ── h2 198.51.100.2
 * ```
 *
 * The server runs in `pub`, a client and its apps in each home `h1`/`h2`,
 * and users connect from `user`. Both homes use the same private subnet, as
 * real homes do; the public side has no route to it, so only burrow connects
 * a user to a home. Only documentation ranges are used (RFC 5737). `cut()`
 * silently drops everything a router forwards (no FIN, no ICMP), `restore()`
 * lifts it. Every namespace name carries this process's pid, so parallel or
 * crashed runs never collide, and `destroy()` removes them all.
 *
 * @module
 */

/** Name prefix of every namespace the suite creates. */
export const NETNS_PREFIX = "burrowt-";

/** Addresses of the bed. */
export const BED = {
  server: "203.0.113.1",
  user: "203.0.113.2",
  router: { 1: "203.0.113.11", 2: "203.0.113.12" },
  home: "198.51.100.2",
} as const;

/** A home: 1 or 2. */
export type Home = 1 | 2;

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stderr).trim();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")}: ${text || `exit ${out.code}`}`);
  return new TextDecoder().decode(out.stdout);
}

/**
 * Why the bed cannot be built here, or undefined when it can: it needs root,
 * `ip` (iproute2) and `iptables`, and the right to create a namespace.
 */
export async function netbedUnavailable(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "needs root for network namespaces";
  for (const tool of ["ip", "iptables"]) {
    try {
      await run(tool, ["-V"]);
    } catch {
      return `needs ${tool} (Debian package ${tool === "ip" ? "iproute2" : "iptables"})`;
    }
  }
  const probe = `${NETNS_PREFIX}${Deno.pid}-probe`;
  try {
    await run("ip", ["netns", "add", probe]);
    await run("ip", ["netns", "exec", probe, "iptables", "-t", "nat", "-L", "-n"]);
  } catch (err) {
    return `cannot create a network namespace with NAT: ${(err as Error).message.split("\n")[0]}`;
  } finally {
    await run("ip", ["netns", "del", probe]).catch(() => {});
  }
  return undefined;
}

/** The suite's namespaces that exist now (optionally only this process's). */
export async function listBedNamespaces(ownOnly = false): Promise<string[]> {
  const text = await run("ip", ["netns", "list"]);
  const names = text.split("\n").map((l) => l.split(" ")[0] ?? "").filter((n) =>
    n.startsWith(NETNS_PREFIX)
  );
  return ownOnly ? names.filter((n) => n.startsWith(`${NETNS_PREFIX}${Deno.pid}-`)) : names;
}

/** Removes namespaces left by runs whose process is gone. */
export async function sweepStaleNamespaces(): Promise<void> {
  for (const name of await listBedNamespaces()) {
    const pid = Number(name.slice(NETNS_PREFIX.length).split("-")[0]);
    let alive = false;
    try {
      Deno.statSync(`/proc/${pid}`);
      alive = true;
    } catch { /* gone */ }
    if (!alive) await run("ip", ["netns", "del", name]).catch(() => {});
  }
}

let bedCounter = 0;

/** A built bed. */
export class NetBed {
  readonly ns: {
    inet: string;
    pub: string;
    user: string;
    r1: string;
    r2: string;
    h1: string;
    h2: string;
  };
  #built: string[] = [];

  private constructor(id: string) {
    const name = (role: string) => `${NETNS_PREFIX}${Deno.pid}-${id}-${role}`;
    this.ns = {
      inet: name("inet"),
      pub: name("pub"),
      user: name("user"),
      r1: name("r1"),
      r2: name("r2"),
      h1: name("h1"),
      h2: name("h2"),
    };
  }

  /** Builds the bed; on any failure, removes what was built and rethrows. */
  static async create(): Promise<NetBed> {
    await sweepStaleNamespaces();
    const bed = new NetBed(String(bedCounter++));
    try {
      await bed.#build();
    } catch (err) {
      await bed.destroy();
      throw err;
    }
    return bed;
  }

  async #build(): Promise<void> {
    const { inet, pub, user, r1, r2, h1, h2 } = this.ns;
    for (const ns of [inet, pub, user, r1, r2, h1, h2]) {
      await run("ip", ["netns", "add", ns]);
      this.#built.push(ns);
      await run("ip", ["-n", ns, "link", "set", "lo", "up"]);
    }
    await run("ip", ["-n", inet, "link", "add", "br0", "type", "bridge"]);
    await run("ip", ["-n", inet, "link", "set", "br0", "up"]);
    const publicSide: Array<[string, string, string]> = [
      [pub, "eth0", BED.server],
      [user, "eth0", BED.user],
      [r1, "wan", BED.router[1]],
      [r2, "wan", BED.router[2]],
    ];
    for (const [ns, dev, addr] of publicSide) {
      const port = `p${publicSide.findIndex((p) => p[0] === ns)}`;
      await run("ip", [
        "link",
        "add",
        dev,
        "netns",
        ns,
        "type",
        "veth",
        "peer",
        "name",
        port,
        "netns",
        inet,
      ]);
      await run("ip", ["-n", inet, "link", "set", port, "master", "br0", "up"]);
      await run("ip", ["-n", ns, "addr", "add", `${addr}/24`, "dev", dev]);
      await run("ip", ["-n", ns, "link", "set", dev, "up"]);
    }
    for (const [router, home] of [[r1, h1], [r2, h2]] as const) {
      await run("ip", [
        "link",
        "add",
        "lan",
        "netns",
        router,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        home,
      ]);
      await run("ip", ["-n", router, "addr", "add", "198.51.100.1/24", "dev", "lan"]);
      await run("ip", ["-n", router, "link", "set", "lan", "up"]);
      await run("ip", ["-n", home, "addr", "add", `${BED.home}/24`, "dev", "eth0"]);
      await run("ip", ["-n", home, "link", "set", "eth0", "up"]);
      await run("ip", ["-n", home, "route", "add", "default", "via", "198.51.100.1"]);
      await run("ip", ["netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      await run("ip", [
        "netns",
        "exec",
        router,
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-o",
        "wan",
        "-j",
        "MASQUERADE",
      ]);
    }
  }

  /** The router namespace of a home. */
  router(home: Home): string {
    return home === 1 ? this.ns.r1 : this.ns.r2;
  }

  /** The host namespace of a home. */
  home(home: Home): string {
    return home === 1 ? this.ns.h1 : this.ns.h2;
  }

  /** Silently drops everything the home's router forwards, both ways. */
  async cut(home: Home): Promise<void> {
    await run("ip", [
      "netns",
      "exec",
      this.router(home),
      "iptables",
      "-I",
      "FORWARD",
      "1",
      "-j",
      "DROP",
    ]);
  }

  /** Lifts a `cut`. */
  async restore(home: Home): Promise<void> {
    await run("ip", ["netns", "exec", this.router(home), "iptables", "-D", "FORWARD", "1"]);
  }

  /** Takes the router's public link down (the home's side gets ICMP; the public side, silence). */
  async linkDown(home: Home): Promise<void> {
    await run("ip", ["-n", this.router(home), "link", "set", "wan", "down"]);
  }

  /** Brings the router's public link back up. */
  async linkUp(home: Home): Promise<void> {
    await run("ip", ["-n", this.router(home), "link", "set", "wan", "up"]);
  }

  /** Makes the home's router forget an established flow idle for `seconds` (as NAT gateways do). */
  async forgetIdleAfter(home: Home, seconds: number): Promise<void> {
    await run("ip", [
      "netns",
      "exec",
      this.router(home),
      "sysctl",
      "-qw",
      `net.netfilter.nf_conntrack_tcp_timeout_established=${seconds}`,
    ]);
  }

  /** Deletes every namespace of the bed (their links and rules go with them). */
  async destroy(): Promise<void> {
    for (const ns of this.#built.splice(0).reverse()) {
      await run("ip", ["netns", "del", ns]).catch(() => {});
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}
