/**
 * Header rewriting at the edge, as RFC 9110 asks of a gateway.
 *
 * Hop-by-hop fields (`Connection` and every field it names, `Keep-Alive`,
 * `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`) end
 * at each hop, both ways. Toward the app the edge sets what only it knows:
 * `X-Forwarded-For` (the user's address appended to what came in),
 * `X-Forwarded-Proto` and `X-Real-IP` (replaced, never taken from the user),
 * `X-Forwarded-Host` (the `Host` the user sent) and `Via`. The fields it sets
 * are added after the hop-by-hop ones are removed, so a user naming
 * `X-Forwarded-For` in `Connection` cannot strip them.
 *
 * @module
 */

/** Fields that never cross a hop (RFC 9110 7.6.1, plus the legacy `Proxy-Connection`). */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

/** Fields the edge sets itself toward the app; any the user sent are dropped first. */
const SET_BY_EDGE = new Set([
  "host",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
  "x-real-ip",
  "via",
  // answered by the edge itself (100-continue), or meant for it
  "expect",
  "proxy-authorization",
]);

/** What the edge knows about a request beyond its headers. */
export interface ForwardInfo {
  /** The user's address (IPv4-mapped IPv6 is shown as IPv4). */
  remote: string;
  /** The scheme the user spoke to the edge. */
  proto: "http" | "https";
  /** The `Host` (or `:authority`) the user sent, as sent. */
  host: string;
  /** `Host` for the app instead of the user's (`host_header`). */
  hostHeader?: string;
  /** The protocol the user spoke, for `Via`: `1.1`, `1.0` or `2.0`. */
  httpVersion: string;
  /** The `Upgrade` value to pass on (WebSocket and others), if this is an upgrade. */
  upgrade?: string;
  /** Send `Transfer-Encoding: chunked`: a body of unknown length follows. */
  chunked?: boolean;
  /** Drop `Authorization`: the edge checked and consumed it. */
  dropAuthorization?: boolean;
}

/** The names a `Connection` field lists, lower case. */
function connectionTokens(raw: readonly string[]): Set<string> {
  const tokens = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() !== "connection") continue;
    for (const token of (raw[i + 1] as string).split(",")) {
      const t = token.trim().toLowerCase();
      if (t) tokens.add(t);
    }
  }
  return tokens;
}

/** `::ffff:192.0.2.1` as `192.0.2.1`; other addresses as they are. */
export function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return "unknown";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote);
  return mapped ? mapped[1] as string : remote;
}

/**
 * The request fields for the app, as a flat `[name, value, ...]` list (the
 * form `node:http` sends as is). `raw` is the user's request as a flat list
 * (`rawHeaders`); HTTP/2 pseudo-fields are dropped and several `cookie`
 * fields are joined with `; ` as RFC 9113 8.2.3 asks for HTTP/1.1.
 */
export function upstreamHeaders(raw: readonly string[], info: ForwardInfo): string[] {
  const named = connectionTokens(raw);
  const out: string[] = [];
  const forwardedFor: string[] = [];
  const cookies: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (lower.startsWith(":")) continue;
    if (lower === "x-forwarded-for") {
      forwardedFor.push(value);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || named.has(lower) || SET_BY_EDGE.has(lower)) continue;
    if (lower === "authorization" && info.dropAuthorization) continue;
    if (lower === "cookie") {
      cookies.push(value);
      continue;
    }
    out.push(name, value);
  }
  if (cookies.length > 0) out.push("Cookie", cookies.join("; "));
  out.unshift("Host", info.hostHeader ?? info.host);
  const remote = clientAddress(info.remote);
  const prior = forwardedFor.map((v) => v.trim()).filter((v) => v !== "");
  out.push("X-Forwarded-For", [...prior, remote].join(", "));
  out.push("X-Forwarded-Proto", info.proto);
  out.push("X-Forwarded-Host", info.host);
  out.push("X-Real-IP", remote);
  const via = raw.flatMap((v, i) => i % 2 === 0 && v.toLowerCase() === "via" ? [raw[i + 1]] : []);
  out.push("Via", [...via, `${info.httpVersion} burrow`].join(", "));
  if (info.upgrade !== undefined) out.push("Connection", "upgrade", "Upgrade", info.upgrade);
  if (info.chunked) out.push("Transfer-Encoding", "chunked");
  return out;
}

/**
 * The app's response fields for the user, hop-by-hop ones removed, as a
 * header object `writeHead` takes for both HTTP/1.1 and HTTP/2 (repeated
 * fields such as `set-cookie` become arrays).
 */
export function downstreamHeaders(raw: readonly string[]): Record<string, string | string[]> {
  const named = connectionTokens(raw);
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const lower = (raw[i] as string).toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower)) continue;
    const value = raw[i + 1] as string;
    const prev = out[lower];
    if (prev === undefined) out[lower] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[lower] = [prev, value];
  }
  return out;
}

/**
 * The head of a `101 Switching Protocols` answer, to write to the user's
 * raw socket: the app's fields as sent, except those that describe the
 * old connection's framing (`Keep-Alive`, `Transfer-Encoding`, `Content-Length`).
 */
export function switchingHead(statusMessage: string, raw: readonly string[]): string {
  let head = `HTTP/1.1 101 ${statusMessage || "Switching Protocols"}\r\n`;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const lower = (raw[i] as string).toLowerCase();
    if (lower === "keep-alive" || lower === "transfer-encoding" || lower === "content-length") {
      continue;
    }
    head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  return head + "\r\n";
}
