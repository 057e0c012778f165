/**
 * What both programs share on the command line: flag parsing that fails
 * with one line, the stderr log sink, stdout output lines, and waiting for
 * SIGINT or SIGTERM. The library itself never prints; only these do.
 *
 * @module
 */

import { configure, type LogRecord } from "@logtape/logtape";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { envToken } from "./fields.ts";
import { ConfigError } from "../util/errors.ts";
import type { LogLevel } from "../util/log_level.ts";
import { maskSecrets } from "../util/secret.ts";

/** Exit codes fixed by the contract. */
export const EXIT = { ok: 0, failure: 1, usage: 2, refused: 3 } as const;

/** A usage error: exit 2 with one line. */
export class UsageError extends Error {
  override name = "UsageError";
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Parses flags strictly; unknown flags and missing values become `UsageError`. */
export function parseFlags<O extends Options>(args: string[], options: O, positionals: boolean) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: positionals });
  } catch (err) {
    const code = (err as { code?: string }).code;
    const message = err instanceof Error ? err.message : String(err);
    const named = /'([^']+)'/.exec(message)?.[1] ?? "";
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") throw new UsageError(`unknown flag ${named}`);
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      const flag = named.split(" ")[0] ?? named;
      throw new UsageError(`flag ${flag} needs a value`);
    }
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
      throw new UsageError("unexpected argument (see --help)");
    }
    throw new UsageError(message.split("\n")[0] ?? message);
  }
}

const encoder = new TextEncoder();

/** Writes one line to stdout at once (output for scripts, not logging). */
export function printLine(line: string): void {
  writeAllSync(Deno.stdout, encoder.encode(line + "\n"));
}

/** Writes one line to stderr at once. */
export function printError(line: string): void {
  writeAllSync(Deno.stderr, encoder.encode(line + "\n"));
}

function writeAllSync(w: { writeSync(p: Uint8Array): number }, p: Uint8Array): void {
  let off = 0;
  while (off < p.length) off += w.writeSync(p.subarray(off));
}

/** Sends burrow's log records to stderr, one calm line each, from `level` up. */
export async function setupLogging(level: LogLevel): Promise<void> {
  await configure({
    reset: true,
    sinks: { stderr: stderrSink },
    loggers: [
      { category: ["burrow"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

function stderrSink(record: LogRecord): void {
  const time = new Date(record.timestamp).toISOString().replace(/\.\d+Z$/, "Z");
  const level = record.level.toUpperCase().padEnd(7);
  const where = record.category.slice(1).join(".");
  const text = record.message.map((part) => typeof part === "string" ? part : String(part)).join(
    "",
  );
  // Peers supply some of what is logged (versions, error texts): escape
  // control characters so nobody can forge or hide log lines.
  const safe = text.replace(
    /\p{Cc}/gu,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
  printError(`${time} ${level} ${where}: ${safe}`);
}

/** Resolves with the signal's name at the first SIGINT or SIGTERM. */
export function stopSignal(): Promise<Deno.Signal> {
  return new Promise((resolve) => {
    // Windows has no SIGTERM (listening for it throws); Ctrl-Break is its nearest kin.
    const signals: Deno.Signal[] = Deno.build.os === "windows"
      ? ["SIGINT", "SIGBREAK"]
      : ["SIGINT", "SIGTERM"];
    const handlers = signals.map((signal) => {
      const handler = () => {
        signals.forEach((s, i) => Deno.removeSignalListener(s, handlers[i] as () => void));
        resolve(signal);
      };
      Deno.addSignalListener(signal, handler);
      return handler;
    });
  });
}

/**
 * Runs a program's `main` and exits with its code. Usage and configuration
 * errors become one line and exit 2; anything else is unexpected and keeps
 * its stack (exit 1).
 */
export async function runMain(
  program: string,
  main: (args: string[]) => Promise<number>,
): Promise<never> {
  try {
    Deno.exit(await main(Deno.args));
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      printError(`${program}: ${maskSecrets(err.message, knownTokens(Deno.args))}`);
      Deno.exit(EXIT.usage);
    }
    throw err;
  }
}

/** Secrets given by `--token`, `--dashboard-password` or the environment, to keep out of error lines. */
function knownTokens(args: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const flags: Array<[string, string]> = [
    ["--token", "(the token)"],
    ["--dashboard-password", "(the dashboard password)"],
  ];
  args.forEach((arg, i) => {
    for (const [flag, label] of flags) {
      if (arg === flag && args[i + 1] !== undefined) out.push([args[i + 1] as string, label]);
      if (arg.startsWith(`${flag}=`)) out.push([arg.slice(flag.length + 1), label]);
    }
  });
  const env = envToken((name) => Deno.env.get(name));
  if (env !== undefined) out.push([env, "(the token)"]);
  try {
    const password = Deno.env.get("BURROW_DASHBOARD_PASSWORD");
    if (password) out.push([password, "(the dashboard password)"]);
  } catch {
    // not permitted to read it: then it cannot have been used either
  }
  return out;
}
