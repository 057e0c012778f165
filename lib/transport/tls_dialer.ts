/**
 * TLS as the client's transport: TCP, then TLS with the trust checks below.
 * The first connection of each control session settles whom to trust; work
 * and discovery connections reuse that answer.
 *
 * Trust, in order:
 * - `fingerprint` pins the server's certificate authority;
 * - `ca` verifies against a CA file;
 * - otherwise the system roots; a server whose CA they do not know is
 *   trusted on first use: its CA's fingerprint is recorded in the state
 *   folder (`known_servers`), and any other CA at that address later is
 *   refused as a changed identity.
 *
 * Deno's TLS cannot show the peer's chain, so the CA is read once with
 * `node:tls`, checked, and then handed to `Deno.startTls` as the trust anchor
 * for every real connection. A generated server certificate carries the name
 * `burrow-server`, which no public CA may issue, so a pinned CA cannot be
 * stood in for by a publicly trusted certificate.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import * as nodeTls from "node:tls";
import { join } from "node:path";
import { formatHostPort, type HostPort } from "../util/addr.ts";
import { ConfigError, errorMessage, RefusedError } from "../util/errors.ts";
import { closeQuietly, netReason } from "./net.ts";
import { dialTcp } from "./tcp.ts";
import { duplexOf } from "./conn_duplex.ts";
import type { ProxyConfig } from "./proxy_url.ts";
import { withDeadline } from "../protocol/frames.ts";
import type { Conn, Dialer } from "./transport.ts";
import { ensurePrivateDir, writeFileAtomic } from "../util/state_dir.ts";
import {
  derToPem,
  formatFingerprint,
  GENERATED_SERVER_NAME,
  isGeneratedCa,
  sha256Hex,
} from "./certs.ts";

/** How the client secures its connections to the server. */
export type ClientTls =
  | { enabled: false }
  | {
    enabled: true;
    /** Pinned CA fingerprint, 64 lowercase hex digits. */
    fingerprint?: string;
    /** PEM text of the CA to verify against, and where it came from. */
    ca?: { pem: string; file: string };
    /** Where trust on first use is recorded; without one it is not recorded. */
    stateDir?: string;
  };

/** The top of the chain a server presented, and whether the system's roots vouch for it. */
interface PeekedChain {
  fingerprint: string;
  topPem: string;
  publiclyTrusted: boolean;
}

/** What every connection verifies against, once settled. */
interface TrustAnchor {
  caCerts?: string[];
  hostname: string;
  how: string;
  /** What the trust rests on: the trusted CA's fingerprint, or `public` (the system roots). */
  binding: string;
}

/** Dials the server over TLS, verifying it as the settings say. */
export class TlsDialer implements Dialer {
  readonly server: HostPort;
  readonly encrypted = true;
  #tls: Extract<ClientTls, { enabled: true }>;
  #log: Logger;
  #anchor: TrustAnchor | undefined;
  #proxy: ProxyConfig | undefined;
  #dialAt: HostPort;

  /**
   * Reaches `server` directly, or through `proxy` (HTTP CONNECT or SOCKS5)
   * when given. `dialAt` is the address to connect to when it is not
   * `server` itself (one address of a name with several); the server is
   * still verified, and recorded, under `server`.
   */
  constructor(
    server: HostPort,
    tls: Extract<ClientTls, { enabled: true }>,
    log: Logger,
    proxy?: ProxyConfig,
    dialAt?: HostPort,
  ) {
    this.server = server;
    this.#dialAt = dialAt ?? server;
    this.#tls = tls;
    this.#log = log;
    this.#proxy = proxy;
  }

  /**
   * What the settled trust rests on, once a connection was made: the
   * fingerprint (64 hex digits) of the CA every connection is verified
   * against, or `public` when the system's roots vouch for the server. A
   * peer can bind a proof to it, so a man in the middle with a CA of its
   * own cannot pass the proof on.
   */
  get binding(): string | undefined {
    return this.#anchor?.binding;
  }

  /**
   * A new connection, verified against the settled trust anchor, or (with
   * `fresh`, for each control session) against the server's identity
   * checked afresh. Rejects with `RefusedError` (`tls_mismatch`,
   * `identity_changed`) for final failures.
   */
  async dial(timeoutMs: number, fresh = false): Promise<Conn> {
    if (fresh || this.#anchor === undefined) this.#anchor = await this.#settle(timeoutMs);
    const anchor = this.#anchor;
    const tcp = await dialTcp(this.#dialAt, timeoutMs, this.#proxy);
    try {
      return await this.#startTls(tcp, anchor, timeoutMs);
    } catch (err) {
      closeQuietly(tcp);
      throw err;
    }
  }

  async #startTls(
    tcp: Deno.TcpConn,
    anchor: TrustAnchor,
    timeoutMs: number,
  ): Promise<Deno.TlsConn> {
    const options: Deno.StartTlsOptions = { hostname: anchor.hostname };
    if (anchor.caCerts) options.caCerts = anchor.caCerts;
    const tls = await Deno.startTls(tcp, options);
    try {
      await withDeadline(
        tls.handshake(),
        timeoutMs,
        `no TLS handshake within ${timeoutMs / 1000}s`,
      );
    } catch (err) {
      closeQuietly(tls);
      throw this.#tlsFailure(err);
    }
    return tls;
  }

  /** A TLS failure as the user should see it. */
  #tlsFailure(err: unknown): Error {
    const text = errorMessage(err);
    const at = formatHostPort(this.server);
    if (/InvalidContentType|corrupt message|wrong version/i.test(text)) {
      return new RefusedError(
        "tls_mismatch",
        `the server at ${at} answered in plaintext (it runs with --no-tls): ` +
          `set tls: false in the group file to match, or turn TLS on at the server`,
      );
    }
    if (err instanceof Deno.errors.InvalidData || /certificate/i.test(text)) {
      return new RefusedError("identity_changed", `cannot verify the server at ${at}: ${text}`);
    }
    return err instanceof Error ? err : new Error(text);
  }

  /**
   * Decides what to verify the server against, checking pins and records.
   * One connection (node:tls) reads the chain the server presents.
   */
  async #settle(timeoutMs: number): Promise<TrustAnchor> {
    const tls = this.#tls;
    const at = formatHostPort(this.server);
    const chain = await this.#peek(timeoutMs);
    if (
      tls.fingerprint === undefined && tls.ca === undefined && chain.publiclyTrusted &&
      !(await isRecorded(tls.stateDir, at))
    ) {
      // A certificate the system's roots vouch for: nothing to pin or record.
      // An address with a record keeps to it: a public certificate does not override it.
      return {
        hostname: this.server.hostname,
        how: "the system's root certificates",
        binding: "public",
      };
    }
    if (tls.ca !== undefined) {
      return {
        caCerts: [tls.ca.pem],
        hostname: this.#nameUnder(tls.ca.pem),
        how: `the CA in ${tls.ca.file}`,
        binding: chain.fingerprint,
      };
    }
    // The name to verify comes from the trusted CA itself, never from the
    // leaf this (unverified) look showed: Deno adds caCerts to the system
    // roots, so under the server's own name a publicly trusted certificate
    // for it would pass on the real connection.
    const hostname = this.#nameUnder(chain.topPem);
    const seen = formatFingerprint(chain.fingerprint);
    if (tls.fingerprint !== undefined) {
      if (chain.fingerprint !== tls.fingerprint) {
        throw new RefusedError(
          "identity_changed",
          `the server at ${at} is not the one pinned: its certificate authority is ${seen}, ` +
            `the group file pins ${formatFingerprint(tls.fingerprint)}`,
        );
      }
      const how = `the pinned fingerprint ${seen}`;
      return { caCerts: [chain.topPem], hostname, how, binding: chain.fingerprint };
    }
    await this.#trustOnFirstUse(tls.stateDir, chain.fingerprint);
    const how = `the recorded fingerprint ${seen}`;
    return { caCerts: [chain.topPem], hostname, how, binding: chain.fingerprint };
  }

  /**
   * The name a certificate under `caPem` is verified against: a CA that
   * burrow generated signs only `burrow-server` certificates, which no public
   * CA issues; another CA's certificates carry the server's own name.
   */
  #nameUnder(caPem: string): string {
    return isGeneratedCa(caPem) ? GENERATED_SERVER_NAME : this.server.hostname;
  }

  /** The chain the server presents, read with node:tls without verifying it. */
  async #peek(timeoutMs: number): Promise<PeekedChain> {
    const { hostname } = this.server;
    const isIp = /^[0-9.]+$|:/.test(hostname);
    // Through a proxy, node:tls runs over the tunnel Deno opened.
    const tunnel = this.#proxy === undefined
      ? undefined
      : duplexOf(await dialTcp(this.#dialAt, timeoutMs, this.#proxy));
    return await withDeadline(
      new Promise<PeekedChain>((resolve, reject) => {
        const socket = nodeTls.connect({
          ...(tunnel === undefined
            ? { host: this.#dialAt.hostname, port: this.#dialAt.port }
            : { socket: tunnel }),
          rejectUnauthorized: false,
          ...(isIp ? {} : { servername: hostname }),
        });
        socket.once("error", (err: Error) => {
          socket.destroy();
          reject(this.#tlsFailure(err));
        });
        socket.once("secureConnect", () => {
          const leaf = socket.getPeerCertificate(true);
          const publiclyTrusted = socket.authorized;
          socket.destroy();
          const ders: Uint8Array[] = [];
          let cert: nodeTls.DetailedPeerCertificate | undefined = leaf;
          while (cert?.raw && ders.length < 10) {
            ders.push(new Uint8Array(cert.raw));
            if (cert.issuerCertificate === cert) break;
            cert = cert.issuerCertificate;
          }
          const top = ders[ders.length - 1];
          if (top === undefined) return reject(new Error("the server sent no certificate"));
          sha256Hex(top).then(
            (fingerprint) => resolve({ fingerprint, topPem: derToPem(top), publiclyTrusted }),
            reject,
          );
        });
      }),
      timeoutMs,
      `no TLS handshake within ${timeoutMs / 1000}s`,
    ).finally(() => tunnel?.destroy());
  }

  /** Records a new server's CA, or refuses one that differs from the record. */
  async #trustOnFirstUse(stateDir: string | undefined, fingerprint: string): Promise<void> {
    const at = formatHostPort(this.server);
    const seen = formatFingerprint(fingerprint);
    if (stateDir === undefined) {
      this.#log.warn(
        `trusting the server at ${at} without a record (no state folder): its certificate ` +
          `authority is ${seen}; pin it with fingerprint: ${seen}`,
      );
      return;
    }
    const file = join(stateDir, "known_servers");
    const known = await readKnown(file);
    const recorded = known.get(at);
    if (recorded === fingerprint) return;
    if (recorded !== undefined) {
      throw new RefusedError(
        "identity_changed",
        `THE SERVER'S IDENTITY CHANGED: ${at} now presents certificate authority ${seen}, ` +
          `but ${formatFingerprint(recorded)} is recorded in ${file}. Someone may be ` +
          `intercepting the connection. If the server was reinstalled on purpose, remove its ` +
          `line from ${file} or pin the new fingerprint`,
      );
    }
    known.set(at, fingerprint);
    try {
      await ensurePrivateDir(stateDir);
      await writeFileAtomic(file, formatKnown(known), 0o600);
    } catch (err) {
      // Refusing to run over an unwritable folder would help no one: trust
      // this once, loudly, as without a state folder.
      this.#log.warn(
        `cannot record the server in ${file} (${netReason(err)}): trusting its certificate ` +
          `authority ${seen} for this run only; pin it with fingerprint: ${seen}`,
      );
      return;
    }
    this.#log.warn(
      `trusting the server at ${at} on first use: its certificate authority is ${seen} ` +
        `(recorded in ${file}; pin it with fingerprint: to be sure)`,
    );
  }
}

/** True when `known_servers` in `stateDir` has a line for `at`. */
async function isRecorded(stateDir: string | undefined, at: string): Promise<boolean> {
  if (stateDir === undefined) return false;
  return (await readKnown(join(stateDir, "known_servers"))).has(at);
}

/** `known_servers`: one `HOST:PORT sha256:HEX` per line; `#` starts a comment. */
async function readKnown(file: string): Promise<Map<string, string>> {
  const known = new Map<string, string>();
  let text = "";
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return known;
    throw new ConfigError(`state_dir: cannot read ${file}: ${netReason(err)}`);
  }
  for (const line of text.split("\n")) {
    const [addr, fp] = line.replace(/#.*/, "").trim().split(/\s+/);
    const hex = fp?.replace(/^sha256:/, "");
    if (addr && hex && /^[0-9a-f]{64}$/.test(hex)) known.set(addr, hex);
  }
  return known;
}

function formatKnown(known: Map<string, string>): string {
  const lines = ["# burrow: servers trusted on first use (HOST:PORT and their CA's fingerprint)"];
  for (const [addr, hex] of known) lines.push(`${addr} ${formatFingerprint(hex)}`);
  return lines.join("\n") + "\n";
}
