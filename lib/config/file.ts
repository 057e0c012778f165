/**
 * Loading YAML config files so that every error names the file, the key and
 * its line: YAML syntax errors carry the parser's line, validation errors are
 * mapped back from the key's path to where it stands in the file.
 *
 * @module
 */

import { dirname, isAbsolute, join } from "node:path";
import { type Document, isMap, isPair, isScalar, LineCounter, parseDocument, visit } from "yaml";
import type { z } from "zod";
import { ConfigError } from "../util/errors.ts";
import { maskSecrets } from "../util/secret.ts";

/** A parsed YAML file that can say where each key stands. */
export interface YamlSource {
  file: string;
  data: unknown;
  /** 1-based line of the key at `path` (or of its nearest present parent). */
  lineOf(path: ReadonlyArray<PropertyKey>): number | undefined;
  /** Values that came from the environment, by variable name; never quoted in errors. */
  expanded?: Map<string, string>;
}

/** Reads and parses a YAML file. Throws `ConfigError` naming the file (and line). */
export async function readYaml(file: string): Promise<YamlSource> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound ? "no such file" : "cannot read it";
    throw new ConfigError(`${file}: ${why}`);
  }
  return parseYaml(file, text);
}

/** Parses YAML text that came from `file`. Throws `ConfigError` on syntax errors. */
export function parseYaml(file: string, text: string): YamlSource {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const first = doc.errors[0];
  if (first) {
    const line = lines.linePos(first.pos[0]).line;
    throw new ConfigError(`${file}: line ${line}: YAML syntax error: ${syntaxProblem(first)}`);
  }
  const lineOf = (path: ReadonlyArray<PropertyKey>): number | undefined => {
    // Walk down as far as the path exists; report the key's own line where possible.
    let node: unknown = doc.contents;
    let line: number | undefined = offsetLine(lines, node);
    for (const step of path) {
      if (!isMap(node) && !(node && typeof node === "object" && "items" in node)) break;
      const items = (node as { items: unknown[] }).items;
      let next: unknown;
      if (isMap(node)) {
        const pair = items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === step);
        if (!isPair(pair)) break;
        line = offsetLine(lines, pair.key) ?? line;
        next = pair.value;
      } else {
        next = typeof step === "number" ? items[step] : undefined;
        if (next === undefined) break;
        line = offsetLine(lines, next) ?? line;
      }
      node = next;
    }
    return line;
  };
  return { file, data: toData(file, doc, lines), lineOf };
}

/**
 * The document as plain data. The yaml package throws, rather than reports,
 * an alias with no anchor before it and an alias explosion ("billion
 * laughs"); both become a `ConfigError` naming the line. The alias's name is
 * not quoted: `token: *abc` is a token that YAML read as an alias.
 */
function toData(file: string, doc: Document.Parsed, lines: LineCounter): unknown {
  try {
    return doc.toJS();
  } catch (err) {
    if (!(err instanceof ReferenceError)) throw err;
    if (!err.message.startsWith("Unresolved alias")) {
      throw new ConfigError(`${file}: YAML aliases expand too far (a guard against alias bombs)`);
    }
    let line: number | undefined;
    visit(doc, {
      Alias(_, node) {
        if (node.resolve(doc) !== undefined) return;
        line = offsetLine(lines, node);
        return visit.BREAK;
      },
    });
    const where = line === undefined ? "" : ` line ${line}:`;
    const why = "YAML alias has no anchor before it (quote a value that starts with *)";
    throw new ConfigError(`${file}:${where} ${why}`);
  }
}

/**
 * yaml errors whose message quotes text from the file. That text may be a
 * token that YAML read as syntax (`token: !ab!cd` is a tag, `"a\q"` a bad
 * escape), so these are said in words of our own.
 */
const QUOTING_YAML_ERRORS: Record<string, string> = {
  TAG_RESOLVE_FAILED: "unknown tag (quote a value that starts with !)",
  BAD_DQ_ESCAPE: "invalid escape sequence in a double-quoted value",
  BAD_PROP_ORDER: "anchors and tags must come after the indicator",
  BAD_SCALAR_START: "a plain value cannot start with this character (quote the value)",
  BAD_ALIAS: "bad alias (quote a value that starts with *)",
  BAD_COLLECTION_TYPE: "a tag does not fit its collection",
  BAD_DIRECTIVE: "bad directive",
  UNEXPECTED_TOKEN: "unexpected text here",
};

/**
 * One line for a YAML syntax error: yaml's own sentence where it quotes
 * nothing from the file, cut at a colon (what follows one is quoted text)
 * and with control characters escaped (its JSON quoting leaves U+2028).
 */
function syntaxProblem(error: { code: string; message: string }): string {
  const ours = QUOTING_YAML_ERRORS[error.code];
  if (ours !== undefined) return ours;
  return escapeControls(oneLine(error.message).replace(/: [^]*$/, ""));
}

function offsetLine(lines: LineCounter, node: unknown): number | undefined {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range ? lines.linePos(range[0]).line : undefined;
}

function oneLine(message: string): string {
  return message.split("\n")[0]?.replace(/ at line \d+, column \d+:?$/, "").trim() ?? message;
}

/** `apps[0].remote_port` from a path. */
export function formatKey(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const step of path) {
    if (typeof step === "number") out += `[${step}]`;
    else out += out === "" ? String(step) : `.${String(step)}`;
  }
  return out || "(top level)";
}

/** `file: key (line N): message`, the one shape of every config error. */
export function configError(
  source: YamlSource,
  path: ReadonlyArray<PropertyKey>,
  message: string,
): ConfigError {
  const line = source.lineOf(path);
  const where = line === undefined ? "" : ` (line ${line})`;
  // A value from the environment, or the token, may be a secret put under
  // the wrong key (or written as a key): name it instead of quoting it.
  const masks: Array<[string, string]> = [...(source.expanded ?? [])]
    .map(([name, value]) => [value, `(value of \${${name}})`]);
  const data = source.data as { token?: unknown; dashboard?: { password?: unknown } } | null;
  if (typeof data?.token === "string") masks.push([data.token, "(the token)"]);
  if (Array.isArray(data)) { // a users file: a token per entry
    for (const entry of data as Array<{ token?: unknown } | null>) {
      if (typeof entry?.token === "string") masks.push([entry.token, "(a token)"]);
    }
  }
  const password = data?.dashboard?.password;
  if (typeof password === "string") masks.push([password, "(the dashboard password)"]);
  const text = maskSecrets(`${formatKey(path)}${where}: ${message}`, masks);
  return new ConfigError(`${source.file}: ${escapeControls(text)}`);
}

const NAMED_ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * Control characters and line separators written as escapes: a key or value
 * quoted from the file keeps the error on one line and cannot drive the terminal.
 */
function escapeControls(text: string): string {
  return text.replace(
    /[\p{Cc}\u2028\u2029]/gu,
    (c) => NAMED_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * Replaces `${VAR}` in every string value with the environment variable's
 * value. An unset (or unreadable) variable is a `ConfigError` naming the key
 * and the variable, never its value.
 */
export function expandEnv(source: YamlSource, getEnv: (name: string) => string | undefined): void {
  const expanded = source.expanded ??= new Map();
  const walk = (value: unknown, path: PropertyKey[]): unknown => {
    if (typeof value === "string") {
      const whole = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(value);
      const text = value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
        let found: string | undefined;
        try {
          found = getEnv(name);
        } catch {
          throw configError(
            source,
            path,
            `environment variable ${name} cannot be read (not permitted: compiled programs read only BURROW_* variables)`,
          );
        }
        if (found === undefined) {
          throw configError(source, path, `environment variable ${name} is not set`);
        }
        expanded.set(name, found);
        return found;
      });
      // A value that is exactly one ${VAR} takes the type its text has in YAML,
      // so `remote_port: ${PORT}` is a number and `no_auth: ${OPEN}` a boolean.
      return whole ? scalarOf(text) : text;
    }
    if (Array.isArray(value)) return value.map((v, i) => walk(v, [...path, i]));
    if (value && typeof value === "object") {
      const obj = value as Record<string, unknown>;
      for (const key of Object.keys(obj)) obj[key] = walk(obj[key], [...path, key]);
    }
    return value;
  };
  source.data = walk(source.data, []);
}

/** The YAML meaning of a plain scalar's text: numbers and booleans typed, the rest text. */
function scalarOf(text: string): unknown {
  if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (text === "true" || text === "false") return text === "true";
  return text;
}

/** Validates a source against a schema; the first problem becomes a `ConfigError`. */
export function validate<T>(schema: z.ZodType<T>, source: YamlSource): T {
  const result = schema.safeParse(source.data ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (!issue) throw new ConfigError(`${source.file}: invalid configuration`);
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0] ?? "";
    return throwIt(configError(source, [...issue.path, key], "unknown key"));
  }
  // Zod leaves `issue.input` out unless asked, so look the value up: absent
  // (or left empty) is "required", anything else keeps the field's own message.
  if (issue.code === "invalid_type" && valueAt(source.data, issue.path) == null) {
    return throwIt(configError(source, issue.path, "is required"));
  }
  return throwIt(configError(source, issue.path, issue.message));
}

function valueAt(data: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let value = data;
  for (const step of path) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<PropertyKey, unknown>)[step];
  }
  return value;
}

function throwIt(err: Error): never {
  throw err;
}

/**
 * A path written in a config `file`, taken relative to that file's folder
 * (absolute paths, and paths from no file, stay as they are).
 */
export function besideFile(file: string | undefined, path: string | undefined): string | undefined {
  if (path === undefined || file === undefined || isAbsolute(path)) return path;
  return join(dirname(file), path);
}
