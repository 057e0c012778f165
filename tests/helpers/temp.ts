/**
 * Scratch space for tests, so a run leaves nothing in /tmp: every temp file
 * and folder a test makes lives under one folder per test process
 * (`/tmp/burrow-test-PID/`), in a subfolder per test module that is removed
 * when the module unloads. The process folder holds the suite's state folder
 * (shared by the modules that `deno test --parallel` runs side by side in one
 * process), and goes with the last module; a folder whose process died
 * (a killed run) is swept by the next run.
 *
 * @module
 */

const TMP = Deno.env.get("TMPDIR") ?? "/tmp";
const PREFIX = "burrow-test-";

/** The folder every test module of this process works in. */
export const PROCESS_DIR = `${TMP}/${PREFIX}${Deno.pid}`;
const MODULES = `${PROCESS_DIR}/modules`;

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Removes the folders of test processes that are gone. */
function sweep(): void {
  for (const entry of Deno.readDirSync(TMP)) {
    const pid = Number(entry.name.startsWith(PREFIX) && entry.name.slice(PREFIX.length));
    if (entry.isDirectory && pid > 0 && pid !== Deno.pid && !alive(pid)) {
      Deno.removeSync(`${TMP}/${entry.name}`, { recursive: true });
    }
  }
}

try {
  sweep();
} catch { /* another run sweeps at the same time */ }

let moduleDir: string | undefined;

/** This module's scratch folder, made on first use (again if removed meanwhile). */
export function scratchDir(): string {
  if (moduleDir !== undefined) {
    try {
      Deno.statSync(moduleDir);
      return moduleDir;
    } catch { /* removed: make a new one */ }
  }
  Deno.mkdirSync(MODULES, { recursive: true });
  moduleDir = Deno.makeTempDirSync({ dir: MODULES });
  return moduleDir;
}

globalThis.addEventListener("unload", () => {
  try {
    if (moduleDir !== undefined) Deno.removeSync(moduleDir, { recursive: true });
    // The last module out takes the process folder (and the state in it) along.
    if ([...Deno.readDirSync(MODULES)].length === 0) {
      Deno.removeSync(PROCESS_DIR, { recursive: true });
    }
  } catch { /* already gone */ }
});

/** Options of the temp helpers: as for `Deno.makeTempFile`, always inside {@linkcode scratchDir}. */
export type TempOptions = Omit<Deno.MakeTempOptions, "dir">;

/** `Deno.makeTempDirSync` inside this module's scratch folder. */
export function makeTempDirSync(o: TempOptions = {}): string {
  return Deno.makeTempDirSync({ ...o, dir: scratchDir() });
}

/** `Deno.makeTempFileSync` inside this module's scratch folder. */
export function makeTempFileSync(o: TempOptions = {}): string {
  return Deno.makeTempFileSync({ ...o, dir: scratchDir() });
}

/** `Deno.makeTempDir` inside this module's scratch folder. */
export function makeTempDir(o: TempOptions = {}): Promise<string> {
  return Deno.makeTempDir({ ...o, dir: scratchDir() });
}

/** `Deno.makeTempFile` inside this module's scratch folder. */
export function makeTempFile(o: TempOptions = {}): Promise<string> {
  return Deno.makeTempFile({ ...o, dir: scratchDir() });
}
