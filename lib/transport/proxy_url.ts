/**
 * Proxy URLs as users write them: `http://[user:pass@]host:port` for an HTTP
 * CONNECT proxy and `socks5://[user:pass@]host:port` for a SOCKS5 one.
 * Credentials may be percent-encoded (`p%40ss` for `p@ss`). The password is
 * kept as a `Secret` and every printed form of a proxy, error messages about
 * a bad URL included, shows it as `***`.
 *
 * @module
 */

import { formatHostPort, type HostPort } from "../util/addr.ts";
import { Secret } from "../util/secret.ts";

/** The protocols a client can reach its server through. */
export type ProxyKind = "http" | "socks5";

/** A proxy to dial through, parsed from its URL. */
export interface ProxyConfig {
  /** `http` for HTTP CONNECT, `socks5` for SOCKS5 (RFC 1928). */
  kind: ProxyKind;
  /** The proxy's own address. */
  address: HostPort;
  /** Basic (HTTP) or username/password (SOCKS5, RFC 1929) credentials. */
  credentials?: { user: string; pass: Secret };
  /** The URL with the password masked, for log lines and errors. */
  display: string;
}

/** Longest user name or password SOCKS5 can carry (RFC 1929: one length byte). */
export const SOCKS5_MAX_CREDENTIAL_BYTES = 255;

const URL_SHAPE =
  /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/(?:([^@/?#]*)@)?(\[[^\]/?#@]*\]|[^:/?#@[\]]*)(?::([^/?#@]*))?(\/?)$/;

/**
 * Parses a proxy URL. Returns a sentence saying what is wrong instead of
 * throwing, so callers can add the file and key; the sentence never shows
 * the password.
 *
 * @example
 * ```ts
 * import { parseProxyUrl } from "./proxy_url.ts";
 * const proxy = parseProxyUrl("http://alice:s3cret@proxy.example:3128");
 * if (typeof proxy !== "string") console.log(proxy.display); // http://alice:***@proxy.example:3128
 * ```
 */
export function parseProxyUrl(text: string): ProxyConfig | string {
  const trimmed = text.trim();
  const m = URL_SHAPE.exec(trimmed);
  const shown = maskUserinfo(trimmed);
  const expected = `expected http://[USER:PASS@]HOST:PORT or socks5://[USER:PASS@]HOST:PORT`;
  if (!m) return `${expected}, got "${shown}"`;
  const [, rawScheme = "", userinfo, rawHost = "", rawPort] = m;
  const scheme = rawScheme.toLowerCase();
  if (scheme !== "http" && scheme !== "socks5") {
    return `proxy scheme "${scheme}" is not supported in "${shown}": use http:// (HTTP CONNECT) ` +
      `or socks5:// (SOCKS5)`;
  }
  const hostname = rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost;
  if (hostname === "") return `${expected}, got "${shown}" (no host)`;
  if (rawHost.startsWith("[") && !hostname.includes(":")) {
    return `"${rawHost}" in "${shown}" is not an IPv6 address`;
  }
  if (rawPort === undefined || rawPort === "") return `"${shown}" has no port: add :PORT`;
  if (!/^\d{1,5}$/.test(rawPort) || Number(rawPort) < 1 || Number(rawPort) > 65535) {
    return `port "${rawPort}" in "${shown}" must be 1-65535`;
  }
  const address = { hostname, port: Number(rawPort) };
  const kind: ProxyKind = scheme;
  if (userinfo === undefined) {
    return { kind, address, display: `${kind}://${formatHostPort(address)}` };
  }
  const credentials = parseCredentials(userinfo, kind, shown);
  if (typeof credentials === "string") return credentials;
  return {
    kind,
    address,
    credentials,
    display: `${kind}://${encodeURIComponent(credentials.user)}:***@${formatHostPort(address)}`,
  };
}

function parseCredentials(
  userinfo: string,
  kind: ProxyKind,
  shown: string,
): { user: string; pass: Secret } | string {
  const colon = userinfo.indexOf(":");
  let user: string;
  let pass: string;
  try {
    user = decodeURIComponent(colon < 0 ? userinfo : userinfo.slice(0, colon));
    pass = decodeURIComponent(colon < 0 ? "" : userinfo.slice(colon + 1));
  } catch {
    return `the credentials in "${shown}" are not valid percent-encoding (write %40 for @)`;
  }
  if (user === "") return `the credentials in "${shown}" have no user name`;
  if (kind === "socks5") {
    const encoder = new TextEncoder();
    if (pass === "") return `a SOCKS5 proxy needs USER:PASS with a password, got "${shown}"`;
    if (
      encoder.encode(user).length > SOCKS5_MAX_CREDENTIAL_BYTES ||
      encoder.encode(pass).length > SOCKS5_MAX_CREDENTIAL_BYTES
    ) {
      return `SOCKS5 user names and passwords are at most ${SOCKS5_MAX_CREDENTIAL_BYTES} bytes ` +
        `(in "${shown}")`;
    }
  }
  return { user, pass: new Secret(pass) };
}

/**
 * `text` with everything between its `scheme://` (if any) and its last `@`
 * shown as `***`: in a mistyped URL the credentials could be anywhere there.
 */
export function maskUserinfo(text: string): string {
  return text.replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)?.*@/s, "$1***@");
}
