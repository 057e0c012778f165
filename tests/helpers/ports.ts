/**
 * Public port blocks for tests. A server's `--ports` must name ports that no
 * other test is using, and tests run in several processes at once (other
 * runs on the machine) and in several modules per process
 * (`deno test --parallel`), so a block is claimed with a lock file
 * (`/tmp/burrow-test-ports/SLOT`, made exclusively) and held until the module
 * unloads; a lock whose process is gone is taken over. Blocks lie below the
 * kernel's ephemeral range, so the tests' own outgoing connections and
 * TIME_WAIT sockets never collide with them.
 *
 * @module
 */

const LOCKS = `${Deno.env.get("TMPDIR") ?? "/tmp"}/burrow-test-ports`;
const FLOOR = 20_000;
const held: string[] = [];
let next = Math.floor(Math.random() * 1_000_000);

/** A block of public ports: `from`-`to` inclusive, and `spec` as the server's `--ports` takes it. */
export interface PortBlock {
  from: number;
  to: number;
  spec: string;
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Takes the lock of `slot`, or of a slot whose owner died; false if another process holds it. */
function claim(slot: number): boolean {
  const path = `${LOCKS}/${slot}`;
  try {
    Deno.writeTextFileSync(path, String(Deno.pid), { createNew: true });
    held.push(path);
    return true;
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
  }
  let owner = 0;
  try {
    owner = Number(Deno.readTextFileSync(path));
  } catch { /* just released */ }
  if (owner > 0 && alive(owner)) return false;
  // Only one claimer can rename the stale lock away; it then makes its own.
  const stale = `${path}.stale-${crypto.randomUUID()}`;
  try {
    Deno.renameSync(path, stale);
    Deno.removeSync(stale);
  } catch {
    return false;
  }
  return claim(slot);
}

globalThis.addEventListener("unload", () => {
  for (const path of held.splice(0)) {
    try {
      Deno.removeSync(path);
    } catch { /* gone */ }
  }
});

/**
 * A block of `size` (at most 100) public ports for one test, below the
 * ephemeral range, held by this module until it unloads.
 */
export function portBlock(size = 50): PortBlock {
  const [low] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().split(/\s+/)
    .map(Number) as [number];
  const slots = Math.floor((Math.max(low, FLOOR + 1000) - FLOOR) / 100);
  Deno.mkdirSync(LOCKS, { recursive: true });
  for (let tries = 0; tries < slots; tries++) {
    const slot = next++ % slots;
    if (!claim(slot)) continue;
    const from = FLOOR + slot * 100;
    const to = from + Math.min(size, 100) - 1;
    return { from, to, spec: `${from}-${to}` };
  }
  throw new Error(`all ${slots} port blocks are held by running tests (locks in ${LOCKS})`);
}

/** A currently free TCP port on 127.0.0.1 (for a control listener that must be reused). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}
