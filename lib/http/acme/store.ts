/**
 * What ACME needs kept between runs, in the state folder's `acme/`:
 * the account key (`account.key`) and each name's certificate chain and
 * key (`certs/NAME.crt`, `certs/NAME.key`), all written atomically and
 * readable by the owner only (0600, in 0700 folders).
 *
 * @module
 */

import { join } from "node:path";
import { ensurePrivateDir, writeFileAtomic } from "../../util/state_dir.ts";
import type { CertPair } from "../certs.ts";

/** The ACME part of a state folder. */
export class AcmeStore {
  readonly dir: string;

  /** `stateDir` is the server's state folder; files go to its `acme/`. */
  constructor(stateDir: string) {
    this.dir = join(stateDir, "acme");
  }

  /** The account key, made by `create` and saved on first use. */
  async accountKey(create: () => Promise<string>): Promise<string> {
    const path = join(this.dir, "account.key");
    try {
      return await Deno.readTextFile(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    await ensurePrivateDir(this.dir);
    const key = await create();
    await writeFileAtomic(path, key, 0o600);
    return key;
  }

  /** Saves the certificate chain and key for `name`. */
  async save(name: string, pair: CertPair): Promise<void> {
    const dir = join(this.dir, "certs");
    await ensurePrivateDir(dir);
    // The key first: a chain on disk always has its key beside it.
    await writeFileAtomic(join(dir, `${safe(name)}.key`), pair.key, 0o600);
    await writeFileAtomic(join(dir, `${safe(name)}.crt`), pair.cert, 0o600);
  }

  /** Every saved certificate, by name; unreadable pairs are skipped. */
  async load(): Promise<Map<string, CertPair>> {
    const dir = join(this.dir, "certs");
    const out = new Map<string, CertPair>();
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return out;
      throw err;
    }
    for (const entry of entries) {
      if (!entry.isFile || !entry.name.endsWith(".crt")) continue;
      const name = entry.name.slice(0, -4);
      try {
        const cert = await Deno.readTextFile(join(dir, entry.name));
        const key = await Deno.readTextFile(join(dir, `${name}.key`));
        out.set(name, { cert, key });
      } catch {
        // half a pair: it is issued again when wanted
      }
    }
    return out;
  }
}

/** A host name as a file name: names are already `[a-z0-9.-]`; anything else is refused. */
function safe(name: string): string {
  if (!/^[a-z0-9][a-z0-9.-]*$/.test(name) || name.includes("..")) {
    throw new Error(`"${name}" is not a host name`);
  }
  return name;
}
