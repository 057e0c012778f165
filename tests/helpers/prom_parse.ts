/**
 * Real Prometheus parsers for the tests: the reference Python client's
 * (`python3-prometheus-client` from Debian, strict in OpenMetrics mode), run
 * as a child process, and `parse-prometheus-text-format` from npm, which is
 * lenient but always available.
 *
 * @module
 */

import parsePrometheusTextFormat from "parse-prometheus-text-format";

const SCRIPT = new URL("./prom_parse.py", import.meta.url).pathname;
/** Debian installs the module for its own python3, which a pyenv shim may hide. */
const PYTHONS = ["/usr/bin/python3", "python3"];

/** One parsed family. */
export interface ParsedFamily {
  name: string;
  type: string;
  help: string;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
}

async function run(python: string, args: string[], input: string) {
  const child = new Deno.Command(python, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const out = await child.output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** The python that has the reference client, or why none does. */
export const referencePython: { path?: string; missing?: string } = await (async () => {
  for (const python of PYTHONS) {
    try {
      const probe = await run(python, ["-c", "import prometheus_client"], "");
      if (probe.code === 0) return { path: python };
    } catch {
      // not installed under that name
    }
  }
  return { missing: "python3-prometheus-client is not installed (apt-get install it)" };
})();

/** Parses with the reference parser; rejects with its message when the text does not parse. */
export async function parseReference(
  text: string,
  format: "text" | "openmetrics",
): Promise<ParsedFamily[]> {
  if (!referencePython.path) throw new Error(referencePython.missing);
  const out = await run(referencePython.path, [SCRIPT, format], text);
  if (out.code !== 0) throw new Error(`reference parser rejected the text: ${out.stderr.trim()}`);
  const special: Record<string, number> = { "+Inf": Infinity, "-Inf": -Infinity, "NaN": NaN };
  return JSON.parse(
    out.stdout,
    (key, value) => key === "value" && typeof value === "string" ? special[value] : value,
  );
}

/** Parses with the npm parser (lenient: use it alongside the reference one). */
export function parseNpm(text: string): Array<{ name: string; type: string; metrics: unknown[] }> {
  return parsePrometheusTextFormat(text);
}
