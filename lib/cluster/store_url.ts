/**
 * The store address a user gives (`--cluster`, `cluster.store`):
 * `redis://[user:pass@]host:port[/db]` or `rediss://` for TLS. Parsing keeps
 * the credentials apart, so that what is printed (`address`) never has them
 * and every message about the store can be masked with {@linkcode maskStore}.
 *
 * @module
 */

import { ConfigError } from "../util/errors.ts";
import { maskSecrets } from "../util/secret.ts";

/** A parsed store URL. */
export interface StoreUrl {
  /** The URL as given, with credentials: hand it only to the Redis client. */
  url: string;
  /** `HOST:PORT`, no credentials: the form to print. */
  address: string;
  /** True for `rediss://`. */
  tls: boolean;
  /** The database number from the path; 0 when none. */
  db: number;
  /** Strings that must never be printed: the password, the user info, the URL. */
  secrets: string[];
}

/**
 * Parses and checks a store URL.
 *
 * @throws {ConfigError} for anything but `redis://` or `rediss://` with a
 *   host, or a path that is not a database number. The message never quotes
 *   the password.
 * @example
 * ```ts
 * import { parseStoreUrl } from "./store_url.ts";
 * const store = parseStoreUrl("redis://burrow:s3cret@10.0.0.5:6379/2");
 * store.address; // "10.0.0.5:6379"
 * store.db; // 2
 * ```
 */
export function parseStoreUrl(text: string): StoreUrl {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(
      `cluster.store: expected redis://[user:pass@]host:port[/db], got ${quoteMasked(text)}`,
    );
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new ConfigError(
      `cluster.store: expected a redis:// or rediss:// URL, got scheme "${url.protocol}"`,
    );
  }
  if (url.hostname === "") throw new ConfigError("cluster.store: the URL has no host");
  const path = url.pathname.replace(/^\//, "");
  if (path !== "" && !/^\d{1,5}$/.test(path)) {
    throw new ConfigError(
      `cluster.store: expected a database number after the port, got "/${path}"`,
    );
  }
  if (url.search !== "" || url.hash !== "") {
    throw new ConfigError("cluster.store: the URL takes no query or fragment");
  }
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  const port = url.port === "" ? "6379" : url.port;
  const secrets = [text, password, url.password, `${url.username}:${url.password}`].filter((s) =>
    s !== "" && s !== ":"
  );
  if (user !== "" && password === "") secrets.push(url.username); // a token given as user name
  return {
    url: text,
    address: `${url.hostname}:${port}`,
    tls: url.protocol === "rediss:",
    db: path === "" ? 0 : Number(path),
    secrets: [...new Set(secrets)],
  };
}

/** `text` with every secret of `store` replaced by `***`. */
export function maskStore(store: Pick<StoreUrl, "secrets">, text: string): string {
  return maskSecrets(text, store.secrets.map((s) => [s, "***"] as const));
}

/** A URL that did not parse, quoted with everything up to its last `@` masked. */
function quoteMasked(text: string): string {
  const at = text.lastIndexOf("@");
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(text)?.[0] ?? "";
  return JSON.stringify(at < 0 ? text : `${scheme}***${text.slice(at)}`);
}
