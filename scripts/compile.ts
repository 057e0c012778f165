/**
 * Builds the single-file programs with `deno compile`, with the narrowest
 * permissions that work, from one table so every build gets the same flags:
 *
 *   deno run -A scripts/compile.ts                 both programs for this machine -> dist/burrow-{server,client}
 *   deno run -A scripts/compile.ts server          one program for this machine
 *   deno run -A scripts/compile.ts --all           both programs for every release target, plus dist/SHA256SUMS
 *   deno run -A scripts/compile.ts --out DIR ...   into DIR instead of dist/
 *
 * Permissions: network, reading files (config files are wherever the user
 * keeps them), writing (the state folder: the server's generated CA, the
 * client's servers trusted on first use; it is wherever --state-dir says),
 * and the environment only for `BURROW_*` variables, the two that the YAML
 * parser reads (LOG_TOKENS, LOG_STREAM) and the three that locate the default
 * state folder (HOME, XDG_STATE_HOME, STATE_DIRECTORY). No subprocesses.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** Release targets. */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;

/** The permissions compiled into both programs. */
export const PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  // The state folder (generated CA, servers trusted on first use) is wherever
  // --state-dir or state_dir says, so writing cannot be narrowed to a path.
  "--allow-write",
  // HOME, XDG_STATE_HOME and STATE_DIRECTORY (systemd) locate the default state folder.
  "--allow-env=BURROW_*,LOG_TOKENS,LOG_STREAM,HOME,XDG_STATE_HOME,STATE_DIRECTORY",
];

const PROGRAMS = { server: "server.ts", client: "client.ts" } as const;
type Program = keyof typeof PROGRAMS;

const root = new URL("../", import.meta.url).pathname;

async function compile(program: Program, out: string, target?: string): Promise<void> {
  const args = ["compile", ...PERMISSIONS, "--output", out];
  if (target) args.push("--target", target);
  args.push(`${root}${PROGRAMS[program]}`);
  const status = await new Deno.Command(Deno.execPath(), { args, cwd: root }).spawn().status;
  if (!status.success) {
    throw new Error(`deno compile of ${program}${target ? ` for ${target}` : ""} failed`);
  }
}

async function sha256File(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { all: { type: "boolean" }, out: { type: "string" } },
    allowPositionals: true,
  });
  const dir = values.out ?? `${root}dist`;
  const programs = (positionals.length > 0 ? positionals : ["server", "client"]) as Program[];
  for (const p of programs) {
    if (!(p in PROGRAMS)) {
      console.error(`compile: unknown program "${p}" (server or client)`);
      Deno.exit(2);
    }
  }
  await Deno.mkdir(dir, { recursive: true });
  try {
    if (values.all) {
      const lines: string[] = [];
      for (const target of TARGETS) {
        for (const p of programs) {
          const name = `burrow-${p}-${target}${target.includes("windows") ? ".exe" : ""}`;
          await compile(p, `${dir}/${name}`, target);
          lines.push(`${await sha256File(`${dir}/${name}`)}  ${name}`);
        }
      }
      await Deno.writeTextFile(`${dir}/SHA256SUMS`, lines.join("\n") + "\n");
    } else {
      for (const p of programs) await compile(p, `${dir}/burrow-${p}`);
    }
  } catch (err) {
    console.error(`compile: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
