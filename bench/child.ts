/**
 * The benchmark's child processes (server, client, sink) and what /proc says
 * about them and the machine. A `Child` collects its stdout lines, so the
 * benchmark waits for a program's own ready line instead of sleeping, and
 * keeps the tail of its stderr to explain a failure.
 *
 * @module
 */

/** The repository root: children run from here. */
export const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);
/** Time a child has to print its ready line (includes Deno loading its modules). */
export const STARTUP_MS = 30_000;
/** Linux reports CPU time in ticks of 1/100 s (USER_HZ). */
const TICKS_PER_SECOND = 100;

/** Resident and peak resident memory, in KiB. */
export interface Memory {
  rssKiB: number;
  hwmKiB: number;
}

/** One spawned `deno` program. */
export class Child {
  readonly name: string;
  readonly pid: number;
  readonly status: Promise<Deno.CommandStatus>;
  #proc: Deno.ChildProcess;
  #lines: string[] = [];
  #stdoutDone = false;
  #wake: () => void = () => {};
  #stderrTail: string[] = [];
  #keepStdin: boolean;

  /**
   * Runs `deno ARGS` (or `command ARGS`) from the repository root; `keepStdin`
   * gives it a pipe it can watch.
   */
  constructor(name: string, args: string[], keepStdin = false, command = Deno.execPath()) {
    this.name = name;
    this.#keepStdin = keepStdin;
    this.#proc = new Deno.Command(command, {
      args,
      cwd: ROOT,
      stdin: keepStdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#proc.pid;
    this.status = this.#proc.status;
    this.#pumpStdout();
    this.#pumpStderr();
  }

  /** Waits for (and consumes) the first unread stdout line matching `re`. */
  async waitLine(re: RegExp, timeoutMs = STARTUP_MS): Promise<RegExpExecArray> {
    const deadline = performance.now() + timeoutMs;
    while (true) {
      const at = this.#lines.findIndex((line) => re.test(line));
      if (at >= 0) return re.exec(this.#lines.splice(at, 1)[0] ?? "")!;
      const left = deadline - performance.now();
      if (this.#stdoutDone || left <= 0) {
        const why = this.#stdoutDone ? "exited" : `printed nothing in ${timeoutMs / 1000}s`;
        throw new Error(`${this.name} ${why} before a line matching ${re}\n${this.stderrTail()}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  /** VmRSS and VmHWM from /proc. */
  memory(): Memory {
    const status = readProc(`/proc/${this.pid}/status`);
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
    return { rssKiB: kib("VmRSS"), hwmKiB: kib("VmHWM") };
  }

  /** User plus system CPU seconds used so far. */
  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }

  /** The last lines the child wrote to stderr, indented and labelled. */
  stderrTail(): string {
    return this.#stderrTail.map((line) => `  ${this.name}: ${line}`).join("\n");
  }

  /** Closes its stdin, sends SIGTERM, and SIGKILL if it has not exited within 5 s. */
  async stop(): Promise<void> {
    if (this.#keepStdin) await this.#proc.stdin.close().catch(() => {});
    signal(this.#proc, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), 5000));
    if (await Promise.race([this.status, late]) === "late") {
      signal(this.#proc, "SIGKILL");
      await this.status;
    }
    clearTimeout(timer);
  }

  /** The last resort of the watchdog and the signal handler: no waiting. */
  kill(): void {
    signal(this.#proc, "SIGKILL");
  }

  async #pumpStdout(): Promise<void> {
    let partial = "";
    try {
      for await (const text of this.#proc.stdout.pipeThrough(new TextDecoderStream())) {
        const parts = (partial + text).split("\n");
        partial = parts.pop() ?? "";
        this.#lines.push(...parts);
        this.#wake();
      }
    } finally {
      this.#stdoutDone = true;
      this.#wake();
    }
  }

  async #pumpStderr(): Promise<void> {
    // Always drained, so a chatty child never blocks on a full pipe.
    for await (const text of this.#proc.stderr.pipeThrough(new TextDecoderStream())) {
      this.#stderrTail.push(...text.split("\n").filter((line) => line.length > 0));
      this.#stderrTail.splice(0, Math.max(0, this.#stderrTail.length - 20));
    }
  }
}

function signal(proc: Deno.ChildProcess, sig: Deno.Signal): void {
  try {
    proc.kill(sig);
  } catch {
    // already exited
  }
}

/**
 * A /proc file's text. Deno 2 lets a program read /proc only with
 * `--allow-all`, so `cat` (under the `--allow-run` the benchmark needs to
 * start the tunnel anyway) reads it, and the task's flags stay narrow.
 */
export function readProc(path: string): string {
  const out = new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" })
    .outputSync();
  if (!out.success) throw new Error(`cannot read ${path}`);
  return new TextDecoder().decode(out.stdout);
}

/** utime + stime of a process, in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readProc(`/proc/${pid}/stat`);
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/**
 * CPU seconds used so far by every user-space process except `exclude`, by
 * pid. Kernel threads are left out: loopback traffic is partly processed in
 * them (ksoftirqd), which would blame the benchmark's own traffic on others.
 * One `sh` expands the /proc glob, since Deno cannot list /proc without
 * `--allow-all`.
 */
export function processCpu(exclude: Set<number>): Map<number, number> {
  const out = new Deno.Command("sh", {
    args: ["-c", "cat /proc/[0-9]*/stat 2>/dev/null"],
    stdout: "piped",
    stderr: "null",
  }).outputSync();
  const cpu = new Map<number, number>();
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const pid = Number(line.slice(0, line.indexOf(" ")));
    const fields = line.slice(line.lastIndexOf(")") + 2).split(" ");
    const ppid = Number(fields[1]);
    if (!(pid > 2) || ppid === 2 || exclude.has(pid)) continue;
    cpu.set(pid, (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND);
  }
  return cpu;
}

/** CPU seconds the hypervisor has taken from this machine (steal), all cores. */
export function stealSeconds(): number {
  const fields = (readProc("/proc/stat").split("\n")[0] ?? "").trim().split(/\s+/);
  return Number(fields[8] ?? 0) / TICKS_PER_SECOND;
}

/**
 * Cores other processes kept busy on average between two `processCpu`
 * samples `seconds` apart. A process that started in between counts whole; one
 * that ended in between is missed, so this is a lower bound.
 */
export function otherCores(
  before: Map<number, number>,
  after: Map<number, number>,
  seconds: number,
): number {
  let used = 0;
  for (const [pid, cpu] of after) used += cpu - (before.get(pid) ?? 0);
  return Math.max(0, used) / seconds;
}
