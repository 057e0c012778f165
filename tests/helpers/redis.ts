/**
 * A real `redis-server` for tests: each one on a free loopback port, without
 * persistence (`--save "" --appendonly no`), so a restart starts empty.
 * Readiness is its own "Ready to accept connections" line, never a sleep.
 *
 * @module
 */

/** The reason to skip, or undefined when `redis-server` is installed. */
export const REDIS_MISSING: string | undefined = (() => {
  try {
    const out = new Deno.Command("redis-server", { args: ["--version"], stdout: "null" })
      .outputSync();
    return out.success ? undefined : "redis-server --version failed";
  } catch {
    return "redis-server is not installed (Debian package redis-server)";
  }
})();

/** Options for {@linkcode startRedis}. */
export interface RedisOptions {
  /** Run with `--requirepass`. */
  password?: string;
  /** Reuse this port (a restart); default a free one. */
  port?: number;
}

/** A running redis-server. */
export class RedisProcess implements AsyncDisposable {
  readonly port: number;
  readonly password: string | undefined;
  #child: Deno.ChildProcess;
  #stopped = false;

  private constructor(port: number, password: string | undefined, child: Deno.ChildProcess) {
    this.port = port;
    this.password = password;
    this.#child = child;
  }

  /** `redis://127.0.0.1:PORT` with the password, if any. */
  get url(): string {
    const auth = this.password === undefined ? "" : `:${encodeURIComponent(this.password)}@`;
    return `redis://${auth}127.0.0.1:${this.port}`;
  }

  /** Starts one and waits until it accepts connections. */
  static async start(options: RedisOptions = {}): Promise<RedisProcess> {
    for (let attempt = 0;; attempt++) {
      const port = options.port ?? freePort();
      const args = [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
      ];
      if (options.password !== undefined) args.push("--requirepass", options.password);
      const child = new Deno.Command("redis-server", {
        args,
        stdout: "piped",
        stderr: "null",
        stdin: "null",
      }).spawn();
      if (await ready(child.stdout)) return new RedisProcess(port, options.password, child);
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      // A free port taken in between, or the old one still closing on a restart.
      if (attempt >= 20) throw new Error(`redis-server did not start on port ${port}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Freezes the process (SIGSTOP): connections stay open, nothing answers. */
  pause(): void {
    this.#child.kill("SIGSTOP");
  }

  /** Thaws it (SIGCONT). */
  resume(): void {
    this.#child.kill("SIGCONT");
  }

  /** Stops it (SIGKILL: no save, no goodbye) and waits until it is gone. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    try {
      this.#child.kill("SIGCONT");
      this.#child.kill("SIGKILL");
    } catch { /* gone */ }
    await this.#child.status;
  }

  /** Runs `redis-cli` against it and returns its output. */
  async cli(...args: string[]): Promise<string> {
    const auth = this.password === undefined ? [] : ["--no-auth-warning", "-a", this.password];
    const out = await new Deno.Command("redis-cli", {
      args: ["-p", String(this.port), ...auth, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout).trim();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Starts a redis-server; see {@linkcode RedisProcess.start}. */
export function startRedis(options: RedisOptions = {}): Promise<RedisProcess> {
  return RedisProcess.start(options);
}

/** Reads stdout until the ready line (true) or the end (false); then drains it. */
async function ready(stdout: ReadableStream<Uint8Array>): Promise<boolean> {
  const reader = stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (true) {
    const next = await reader.read();
    if (next.done) return false;
    text += decoder.decode(next.value, { stream: true });
    if (text.includes("Ready to accept connections")) break;
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain so the pipe never fills */ }
  })();
  return true;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
