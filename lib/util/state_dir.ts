/**
 * Where burrow keeps what it must remember between runs: the server's
 * generated certificate authority, the client's record of servers it
 * trusted on first use.
 *
 * @module
 */

import { join } from "node:path";

/**
 * The default state folder: systemd's `$STATE_DIRECTORY` when run as a
 * service with `StateDirectory=`, else `$XDG_STATE_HOME/burrow`, else
 * `$HOME/.local/state/burrow`. Undefined when none of them is set (the user
 * must then name one).
 */
export function defaultStateDir(
  getEnv: (name: string) => string | undefined = safeEnv,
): string | undefined {
  const systemd = getEnv("STATE_DIRECTORY")?.split(":")[0];
  if (systemd) return systemd;
  const xdg = getEnv("XDG_STATE_HOME");
  if (xdg) return join(xdg, "burrow");
  const home = getEnv("HOME");
  if (home) return join(home, ".local", "state", "burrow");
  return undefined;
}

/** `Deno.env.get`, or undefined where the variable may not be read. */
function safeEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** Creates `dir` (and its parents) readable by the owner only. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
}

/**
 * Writes `text` to `path` atomically (a temporary file renamed over it), with
 * `mode`, so a crash never leaves half a certificate or key behind.
 */
export async function writeFileAtomic(path: string, text: string, mode = 0o600): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeTextFile(tmp, text, { mode, createNew: true });
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}
