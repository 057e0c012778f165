/**
 * Lets `acme-client` load in a program with narrow `--allow-env` (the
 * compiled server may read only `BURROW_*` and a few more). Its `debug`
 * dependency lists every variable (`Object.keys(process.env)`) as it loads,
 * which needs access to all of them and would end the program. Without
 * that access, `process.env` becomes a view that lists nothing and reads
 * only what the permissions allow. Import this module before `acme-client`.
 *
 * @module
 */

import process from "node:process";

if (Deno.permissions.querySync({ name: "env" }).state !== "granted") {
  const read = (key: string | symbol) => {
    if (typeof key !== "string") return undefined;
    try {
      return Deno.env.get(key);
    } catch {
      return undefined; // not permitted: as if unset
    }
  };
  const view = new Proxy({} as Record<string, string>, {
    get: (_, key) => read(key),
    has: (_, key) => read(key) !== undefined,
    ownKeys: () => [],
    set: () => true, // a library's own settings stay its own
  });
  Object.defineProperty(process, "env", { value: view, configurable: true, writable: true });
}
