/**
 * The client's options, checked before anything is dialled: the server
 * address, group and token, the TLS settings (a `ca` file is read now), and
 * each app's name, local address, description, limits and `allowFrom`.
 * Every problem is a `ConfigError` that names the option.
 *
 * @module
 */

import { type HostPort, parseHostPort } from "../util/addr.ts";
import { parseCidr } from "../util/cidr.ts";
import { defaultStateDir } from "../util/state_dir.ts";
import { ConfigError, errorMessage } from "../util/errors.ts";
import { Secret } from "../util/secret.ts";
import { normalizeFingerprint, pemCertificates } from "../transport/certs.ts";
import type { ClientTls } from "../transport/tls_dialer.ts";
import { parseProxyUrl, type ProxyConfig } from "../transport/proxy_url.ts";
import type { ProxyProtocolVersion } from "../tunnel/proxy_protocol.ts";
import {
  BALANCE_POLICIES,
  type BalancePolicy,
  checkExposeExtras,
  MAX_ALLOW_FROM,
  NAME_PATTERN,
} from "../protocol/protocol.ts";
import {
  DEFAULT_UDP_IDLE_TIMEOUT,
  MAX_UDP_IDLE_SECONDS,
  type UdpApp,
  type WebApp,
} from "../protocol/control.ts";
import type { ClientOptions, ExposeOptions } from "./api.ts";
import { MAX_SERVERS } from "../config/limits.ts";

/** The checked essentials of {@linkcode ClientOptions}. */
export interface CheckedClient {
  /** One or more, in the order given. */
  servers: HostPort[];
  token: Secret;
  admin?: HostPort;
}

/** Checks the server addresses, group and token. Throws `ConfigError`. */
export function checkClientOptions(options: ClientOptions): CheckedClient {
  const texts = typeof options.server === "string" ? [options.server] : [...options.server];
  if (texts.length === 0 || texts.length > MAX_SERVERS) {
    throw new ConfigError(`server: must list 1 to ${MAX_SERVERS} HOST:PORT addresses`);
  }
  const servers = texts.map((text) => {
    const server = parseHostPort(text);
    if (typeof server === "string") throw new ConfigError(`server: ${server}`);
    return server;
  });
  if (!NAME_PATTERN.test(options.group)) {
    throw new ConfigError(
      `group: "${options.group}" must be 1-63 lowercase letters, digits or dashes`,
    );
  }
  const token = typeof options.token === "string" ? new Secret(options.token) : options.token;
  if (token.reveal() === "") throw new ConfigError("token: must not be empty");
  return { servers, token };
}

/** The proxy to reach the server through, checked, or undefined. Throws `ConfigError`. */
export function checkProxy(proxy: string | Secret | undefined): ProxyConfig | undefined {
  if (proxy === undefined) return undefined;
  const parsed = parseProxyUrl(typeof proxy === "string" ? proxy : proxy.reveal());
  if (typeof parsed === "string") throw new ConfigError(`proxy: ${parsed}`);
  return parsed;
}

/** Checks an app's `proxyProtocol`. Throws `ConfigError`. */
export function checkProxyProtocol(version: string): ProxyProtocolVersion {
  if (version !== "v1" && version !== "v2") {
    throw new ConfigError(`proxyProtocol: must be "v1" or "v2", got "${version}"`);
  }
  return version;
}

/** Checks the admin address, if one is given. Throws `ConfigError`. */
export function checkAdmin(admin: string | undefined): HostPort | undefined {
  if (admin === undefined) return undefined;
  const addr = parseHostPort(admin);
  if (typeof addr === "string") throw new ConfigError(`admin: ${addr}`);
  return addr;
}

/**
 * Checks what `expose` was given: the local address, and the name, extras
 * and `allowFrom` ranges as the server will. Throws `ConfigError`.
 */
export function checkExpose(options: ExposeOptions): HostPort {
  if (!NAME_PATTERN.test(options.name)) {
    throw new ConfigError(
      `name: "${options.name}" must be 1-63 lowercase letters, digits or dashes`,
    );
  }
  const local = parseHostPort(options.local);
  if (typeof local === "string") throw new ConfigError(`local: ${local}`);
  const extras = checkExposeExtras(options);
  if (extras !== undefined) throw new ConfigError(extras);
  return local;
}

/** Checks an app's `allowFrom` ranges. Throws `ConfigError`. */
export function checkAllowFrom(allowFrom: string[]): void {
  if (allowFrom.length === 0 || allowFrom.length > MAX_ALLOW_FROM) {
    throw new ConfigError(`allowFrom: must list 1 to ${MAX_ALLOW_FROM} address ranges`);
  }
  for (const range of allowFrom) {
    const parsed = parseCidr(range);
    if (typeof parsed === "string") throw new ConfigError(`allowFrom: ${parsed}`);
  }
}

/** The TLS settings of the options, checked; reads a `ca` file now. */
export function clientTls(
  options: { tls?: ClientOptions["tls"] | undefined; stateDir?: string | undefined },
): ClientTls {
  const tls = options.tls ?? true;
  if (tls === false) return { enabled: false };
  const out: ClientTls = { enabled: true };
  const stateDir = options.stateDir ?? defaultStateDir();
  if (stateDir !== undefined) out.stateDir = stateDir;
  if (tls === true) return out;
  if (tls.fingerprint !== undefined) {
    const hex = normalizeFingerprint(tls.fingerprint);
    if (hex === undefined) {
      throw new ConfigError(
        `fingerprint: expected sha256: and 64 hex digits, got "${tls.fingerprint.slice(0, 80)}"`,
      );
    }
    out.fingerprint = hex;
  }
  if (tls.ca !== undefined) {
    let pem: string;
    try {
      pem = Deno.readTextFileSync(tls.ca);
    } catch (err) {
      throw new ConfigError(`ca: cannot read ${tls.ca}: ${errorMessage(err)}`);
    }
    if (pemCertificates(pem).length === 0) {
      throw new ConfigError(`ca: ${tls.ca} holds no PEM certificate`);
    }
    out.ca = { pem, file: tls.ca };
  }
  return out;
}

/** Checks an app's `balance`. Throws `ConfigError`. */
export function checkBalance(balance: string): BalancePolicy {
  if (!(BALANCE_POLICIES as readonly string[]).includes(balance)) {
    throw new ConfigError(`balance: must be round_robin or least_conn, got "${balance}"`);
  }
  return balance as BalancePolicy;
}

/** An app's web options as `expose` sends them. */
export function webRequest(options: ExposeOptions): WebApp {
  const web = options.web as NonNullable<ExposeOptions["web"]>;
  if (options.remotePort !== undefined && options.remotePort !== 0) {
    throw new ConfigError(`${options.name}: remote_port is not a key of a ${web.type} app`);
  }
  const out: WebApp = {
    type: web.type,
    hostnames: [...(web.hostnames ?? [])],
    paths: [...(web.paths ?? [])],
  };
  if (web.subdomain !== undefined) out.subdomain = web.subdomain;
  if (web.hostHeader !== undefined) out.hostHeader = web.hostHeader;
  if (web.httpsOnly !== undefined) out.httpsOnly = web.httpsOnly;
  if (web.auth !== undefined) {
    const password = typeof web.auth.password === "string"
      ? web.auth.password
      : web.auth.password.reveal();
    out.auth = { user: web.auth.user, password };
  }
  return out;
}

/** A udp app's options as `expose` sends them. Throws `ConfigError`. */
export function udpRequest(options: ExposeOptions): UdpApp {
  if (options.web !== undefined) throw new ConfigError(`${options.name}: a udp app has no web`);
  if (options.proxyProtocol !== undefined) {
    throw new ConfigError(`${options.name}: proxyProtocol is not an option of a udp app`);
  }
  const idleTimeout = options.udpIdleTimeout ?? DEFAULT_UDP_IDLE_TIMEOUT;
  if (!(idleTimeout > 0 && idleTimeout <= MAX_UDP_IDLE_SECONDS)) {
    throw new ConfigError(
      `${options.name}: udpIdleTimeout must be more than 0 and at most ${MAX_UDP_IDLE_SECONDS} seconds`,
    );
  }
  return { idleTimeout };
}
