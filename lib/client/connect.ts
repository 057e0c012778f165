/**
 * How a client opens a connection to its server, whatever it is for
 * (control, work, discovery): dial over the transport (TLS or plain TCP),
 * send the preamble, and read the server's challenge, checking the
 * protocol version before anything else.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import type { HostPort } from "../util/addr.ts";
import { RefusedError } from "../util/errors.ts";
import { closeQuietly } from "../transport/net.ts";
import type { Conn, Dialer } from "../transport/transport.ts";
import { TcpDialer } from "../transport/tcp.ts";
import { type ClientTls, TlsDialer } from "../transport/tls_dialer.ts";
import type { ProxyConfig } from "../transport/proxy_url.ts";
import {
  CLIENT_PREAMBLE,
  type ClientMessage,
  FrameReader,
  FrameWriter,
  HANDSHAKE_TIMEOUT_MS,
  parseGreeting,
  PROTOCOL_VERSION,
  type Refused,
  TlsRecordError,
  versionMismatch,
  writeAll,
} from "../protocol/protocol.ts";

/**
 * The dialer the TLS settings call for, reaching the server through `proxy`
 * if given; `at` is the address to connect to when it is not `server` itself.
 */
export function dialerFor(
  server: HostPort,
  tls: ClientTls,
  log: Logger,
  proxy?: ProxyConfig,
  at?: HostPort,
): Dialer {
  return tls.enabled
    ? new TlsDialer(server, tls, log, proxy, at)
    : new TcpDialer(server, proxy, at);
}

/** A connection to the server, challenged: its reader, writer and the nonce to prove against. */
export interface Opened {
  conn: Conn;
  reader: FrameReader;
  writer: FrameWriter<ClientMessage>;
  nonce: string;
}

/**
 * Dials the server, sends the preamble and reads the challenge. `fresh`
 * checks the server's identity anew. Closes the connection if any step fails.
 */
export async function open(dialer: Dialer, timeoutMs: number, fresh = false): Promise<Opened> {
  const conn = await dialer.dial(timeoutMs, fresh);
  try {
    await writeAll(conn, CLIENT_PREAMBLE);
    const reader = new FrameReader(conn);
    const nonce = await readChallenge(reader);
    return { conn, reader, writer: new FrameWriter<ClientMessage>(conn), nonce };
  } catch (err) {
    closeQuietly(conn);
    throw err;
  }
}

/** Reads the server's challenge, checking the protocol version first. */
export async function readChallenge(reader: FrameReader): Promise<string> {
  let raw: unknown;
  try {
    raw = await reader.read(HANDSHAKE_TIMEOUT_MS);
  } catch (err) {
    if (!(err instanceof TlsRecordError)) throw err;
    throw new RefusedError(
      "tls_mismatch",
      "the server speaks TLS but this client has tls: false; remove tls: false (TLS is the default)",
    );
  }
  if (raw === null) throw new Error("the server closed the connection before the handshake");
  const msg = parseGreeting(raw);
  if (msg.type === "refused") throw refusal(msg);
  if (msg.version !== PROTOCOL_VERSION) {
    throw new RefusedError("version_mismatch", versionMismatch(PROTOCOL_VERSION, msg.version));
  }
  return msg.nonce;
}

/** A refusal as an error: final ones as `RefusedError`, a closing server as a plain one. */
export function refusal(msg: Refused): Error {
  if (msg.code === "server_closing") return new Error(msg.message);
  return new RefusedError(msg.code, msg.message);
}
