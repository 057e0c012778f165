/**
 * Burrow's programs as child processes: a {@linkcode Proc} runs `server.ts`
 * or `client.ts` (or any script) with the suite's state folder, collects its
 * output lines and lets tests wait for one ({@linkcode Lines}), and stops it
 * with `await using`. Waiting is for lines, exits and conditions, never for
 * a fixed time.
 *
 * @module
 */

import { PROCESS_DIR, scratchDir } from "./temp.ts";

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
 * own state folder is never touched; the folder goes with the test process
 * (see `temp.ts`).
 */
export const SUITE_STATE: string = `${PROCESS_DIR}/state`;
Deno.mkdirSync(SUITE_STATE, { recursive: true, mode: 0o700 });
Deno.env.set("XDG_STATE_HOME", SUITE_STATE);
scratchDir(); // registers this module, so the process folder stays while it runs

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

/**
 * Polls `get` every 50 ms until `ok` holds and returns that value; fails
 * after `timeoutMs`, showing the last value (and `what`, if given).
 */
export async function until<T>(
  get: () => Promise<T> | T,
  ok: (v: T) => boolean,
  timeoutMs = 15_000,
  what = "",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const last = await get();
    if (ok(last)) return last;
    if (Date.now() > deadline) {
      throw new Error(
        `${what || "condition"} not met in ${timeoutMs} ms; last: ${JSON.stringify(last)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs a program (`server.ts`, `client.ts`) to its end, with no `BURROW_TOKEN` unless `env` sets one. */
export async function runToEnd(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = new Proc(script, args, { BURROW_TOKEN: "", ...env });
  const code = await proc.exitCode(20_000);
  return { code, stdout: proc.stdout.text, stderr: proc.stderr.text };
}
