/**
 * Discovery: asks a server, without registering a group, which services are
 * live or which public ports are free. One connection, one question, one
 * answer, authenticated by the same challenge-response as everything else.
 *
 * @module
 */

import { parseHostPort } from "../util/addr.ts";
import { dialerFor, open, refusal } from "./connect.ts";
import { ConfigError, ProtocolError } from "../util/errors.ts";
import { getLogger } from "@logtape/logtape";
import type { ClientOptions } from "./api.ts";
import { checkProxy, clientTls } from "./options.ts";
import { closeQuietly } from "../transport/net.ts";
import {
  type DiscoveryAnswer,
  HANDSHAKE_TIMEOUT_MS,
  NAME_PATTERN,
  parseDiscoveryAnswer,
  PROTOCOL_VERSION,
} from "../protocol/protocol.ts";
import { prove, Secret } from "../util/secret.ts";
import type { ServiceInfo } from "../protocol/services.ts";

/**
 * Options for {@linkcode discoverServices} and {@linkcode discoverFreePorts}.
 *
 * @example
 * ```ts
 * import { type DiscoveryOptions, discoverFreePorts, Secret } from "@burrow/burrow";
 * const options: DiscoveryOptions = { server: "127.0.0.1:7700", token: new Secret("s3cret") };
 * const { items, truncated } = await discoverFreePorts(options);
 * console.log(items, truncated ? "(and more)" : "");
 * ```
 */
export interface DiscoveryOptions {
  /** The server's control address, `HOST:PORT`. */
  server: string;
  /** The shared secret, or the group's own token on a server with per-group credentials. */
  token: string | Secret;
  /**
   * The group whose token this is, on a server with per-group credentials;
   * the answer then covers that group's services and ports only.
   */
  group?: string;
  /** As for {@linkcode ClientOptions.tls}. @default {true} */
  tls?: ClientOptions["tls"];
  /** As for {@linkcode ClientOptions.stateDir}. */
  stateDir?: string;
  /** As for {@linkcode ClientOptions.proxy}. */
  proxy?: string | Secret;
}

/** What a discovery answer holds, and whether the server had to leave some out. */
export interface Discovered<T> {
  /** What the server reported. */
  items: T[];
  /** True when the server had more than fit in one answer and left the rest out. */
  truncated: boolean;
}

async function ask(
  options: DiscoveryOptions,
  what: "services" | "free_ports",
): Promise<Exclude<DiscoveryAnswer, { type: "refused" }>> {
  const server = parseHostPort(options.server);
  if (typeof server === "string") throw new ConfigError(`server: ${server}`);
  const token = typeof options.token === "string" ? new Secret(options.token) : options.token;
  if (options.group !== undefined && !NAME_PATTERN.test(options.group)) {
    throw new ConfigError(
      `group: "${options.group}" must be 1-63 lowercase letters, digits or dashes`,
    );
  }
  const proxy = checkProxy(options.proxy);
  const log = getLogger(["burrow", "discovery"]);
  const dialer = dialerFor(server, clientTls(options), log, proxy);
  const { conn, reader, writer, nonce } = await open(dialer, HANDSHAKE_TIMEOUT_MS, true);
  try {
    await writer.send({
      type: "query",
      version: PROTOCOL_VERSION,
      what,
      ...(options.group === undefined ? {} : { group: options.group }),
      proof: await prove(token, nonce, "query", options.group ?? ""),
    });
    const raw = await reader.read(HANDSHAKE_TIMEOUT_MS);
    if (raw === null) throw new Error("the server closed the connection without answering");
    const reply = parseDiscoveryAnswer(raw);
    if (reply.type === "refused") throw refusal(reply);
    return reply;
  } finally {
    closeQuietly(conn);
  }
}

/**
 * The services live on a server, with their figures. Rejects with
 * `ConfigError` for a bad `server` address and with `RefusedError` when the
 * server refuses (a wrong token gives code `auth_failed`).
 *
 * @example
 * ```ts
 * import { discoverServices } from "@burrow/burrow";
 * const { items } = await discoverServices({ server: "127.0.0.1:7700", token: "s3cret" });
 * for (const s of items) console.log(`${s.group}/${s.app} on port ${s.port}`);
 * ```
 */
export async function discoverServices(
  options: DiscoveryOptions,
): Promise<Discovered<ServiceInfo>> {
  const reply = await ask(options, "services");
  if (reply.type !== "services") throw new ProtocolError(`expected services, got ${reply.type}`);
  const items = reply.services.map((s) => {
    const { description, since, transport, ...rest } = s;
    const info: ServiceInfo = { ...rest, since: new Date(since) };
    if (description !== undefined) info.description = description;
    if (transport !== undefined) info.transport = transport;
    return info;
  });
  return { items, truncated: reply.truncated };
}

/**
 * The public ports a server would still give out, as inclusive
 * `[from, to]` ranges. Fails like {@linkcode discoverServices}.
 *
 * @example
 * ```ts
 * import { discoverFreePorts } from "@burrow/burrow";
 * const { items } = await discoverFreePorts({ server: "127.0.0.1:7700", token: "s3cret" });
 * console.log(items.map(([from, to]) => from === to ? `${from}` : `${from}-${to}`).join(","));
 * ```
 */
export async function discoverFreePorts(
  options: DiscoveryOptions,
): Promise<Discovered<[number, number]>> {
  const reply = await ask(options, "free_ports");
  if (reply.type !== "free_ports") {
    throw new ProtocolError(`expected free_ports, got ${reply.type}`);
  }
  return { items: reply.ranges, truncated: reply.truncated };
}
