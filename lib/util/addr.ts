/**
 * `HOST:PORT` addresses as users write them, and port-range specs such as
 * `6000-6100,7022`.
 *
 * @module
 */

/** A host and a TCP port. */
export interface HostPort {
  /** A host name, an IPv4 address, or an IPv6 address without brackets. */
  hostname: string;
  /** A TCP port, 0-65535. */
  port: number;
}

/**
 * Parses `HOST:PORT` (`[v6]:PORT` for IPv6). Returns a sentence saying what
 * is wrong instead of throwing, so callers can add the file and key.
 */
export function parseHostPort(text: string): HostPort | string {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) return `expected HOST:PORT, got "${text}"`;
  const port = Number(m[3]);
  if (port > 65535) return `port ${port} is out of range (0-65535) in "${text}"`;
  return { hostname: (m[1] ?? m[2]) as string, port };
}

/** `host:port`, with brackets around IPv6 hosts. */
export function formatHostPort(addr: HostPort): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

/** An inclusive range of ports. */
export interface PortRange {
  from: number;
  to: number;
}

/**
 * Parses a port spec: comma-separated ports and `from-to` ranges, each within
 * 1-65535. Returns the ranges, or a sentence saying what is wrong.
 */
export function parsePortSpec(spec: string): PortRange[] | string {
  const ranges: PortRange[] = [];
  for (const raw of spec.split(",")) {
    const part = raw.trim();
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part);
    if (!m) return `expected ports like "6000-6100,7022", got "${spec}"`;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (from < 1 || to > 65535) return `port "${part}" is outside 1-65535`;
    if (from > to) return `range "${part}" runs backwards`;
    ranges.push({ from, to });
  }
  return ranges;
}

/** Whether a host is a loopback address, reachable only from this machine. */
export function isLoopback(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) ||
    /^::ffff:127\./.test(h);
}
