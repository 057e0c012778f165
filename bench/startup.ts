/**
 * The start-up budget: how long `burrow-client` takes from launch to its
 * first `ready` line against a running local server, and how much memory it
 * holds once idle. Uses the compiled `dist/burrow-client` when there is one
 * (`deno task compile:client`); otherwise runs client.ts with the same
 * permissions the binary has, and says so.
 *
 * @module
 */

import { PERMISSIONS } from "../scripts/compile.ts";
import { Child, ROOT } from "./child.ts";

/** What the start-up phase measured. */
export interface StartupFigures {
  /** "compiled dist/burrow-client" or "deno run client.ts (no compiled binary)". */
  how: string;
  /** Launch to `ready`, each run, in ms. */
  readyMs: number[];
  medianMs: number;
  /** RSS after the last run has been ready and idle for a second. */
  idleRssMiB: number;
}

/** Launches the client `runs` times against the server at `control`, exposing `appPort`. */
export async function startup(
  control: number,
  token: string,
  appPort: number,
  fingerprint: string | undefined,
  runs = 5,
): Promise<StartupFigures> {
  const binary = `${ROOT}/dist/burrow-client`;
  let compiled = false;
  try {
    compiled = Deno.statSync(binary).isFile;
  } catch { /* not built */ }
  const how = compiled ? "compiled dist/burrow-client" : "deno run client.ts (no compiled binary)";
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "burrow-startup-" });
  const readyMs: number[] = [];
  let idleRssMiB = NaN;
  try {
    for (let i = 0; i < runs; i++) {
      const file = `${dir}/startup-${i}.yaml`;
      await Deno.writeTextFile(
        file,
        `server: 127.0.0.1:${control}\ntoken: ${token}\ngroup: startup-${i}\n` +
          (fingerprint === undefined ? "tls: false\n" : `fingerprint: ${fingerprint}\n`) +
          `apps:\n  - name: echo\n    local: 127.0.0.1:${appPort}\n`,
      );
      const args = ["--log-level", "warning"];
      const started = performance.now();
      const client = compiled
        ? new Child("startup client", [file, ...args], false, binary)
        : new Child("startup client", ["run", ...PERMISSIONS, "client.ts", file, ...args]);
      try {
        await client.waitLine(new RegExp(`^ready startup-${i}/echo 127\\.0\\.0\\.1:\\d+$`));
        readyMs.push(performance.now() - started);
        if (i === runs - 1) {
          await new Promise((r) => setTimeout(r, 1000)); // settle: the figure is idle memory
          idleRssMiB = client.memory().rssKiB / 1024;
        }
      } finally {
        client.kill();
        await client.status;
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const sorted = [...readyMs].sort((a, b) => a - b);
  return { how, readyMs, medianMs: sorted[Math.floor(sorted.length / 2)] ?? NaN, idleRssMiB };
}
