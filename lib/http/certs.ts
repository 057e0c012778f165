/**
 * The certificates the `--https` listener terminates TLS with, chosen by the
 * name the client asks for (SNI): a certificate naming it exactly, then one
 * whose `*.` wildcard covers it (one label, as TLS clients check), then the
 * default certificate. The operator's certificates (`https.cert`,
 * `https.certs`) and those issued over ACME live here side by side; a newer
 * certificate for a name replaces the older one, and handshakes under way
 * keep theirs.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import tls from "node:tls";
import * as x509 from "@peculiar/x509";
import { pemCertificates } from "../transport/certs.ts";

/** A certificate chain and its private key, as PEM. */
export interface CertPair {
  cert: string;
  key: string;
}

/** What the store knows of one certificate. */
export interface CertInfo {
  /** DNS names it covers (subjectAltName, or the CN without one), lower case. */
  names: string[];
  notBefore: Date;
  notAfter: Date;
}

interface Entry extends CertInfo {
  context: tls.SecureContext;
  pair: CertPair;
}

/**
 * Reads the names and validity of the first certificate of a PEM chain.
 * Throws an error that names what is wrong when it is not a certificate.
 */
export function certInfo(pem: string): CertInfo {
  const der = pemCertificates(pem)[0];
  if (der === undefined) throw new Error("no PEM certificate found");
  const cert = new x509.X509Certificate(der as BufferSource);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  let names = (san?.names.items ?? []).filter((n) => n.type === "dns").map((n) =>
    n.value.toLowerCase()
  );
  if (names.length === 0) {
    const cn = /(?:^|,\s*)CN=([^,]+)/.exec(cert.subject)?.[1];
    if (cn !== undefined) names = [cn.toLowerCase()];
  }
  return { names, notBefore: cert.notBefore, notAfter: cert.notAfter };
}

/** Whether a certificate name (`a.example.org` or `*.example.org`) covers `host`. */
export function nameCovers(certName: string, host: string): boolean {
  if (certName === host) return true;
  if (!certName.startsWith("*.")) return false;
  const dot = host.indexOf(".");
  return dot > 0 && host.slice(dot + 1) === certName.slice(2);
}

/** Certificates by name, with a default. */
export class CertStore {
  #byName = new Map<string, Entry>();
  #default: Entry | undefined;

  /**
   * Adds a certificate for every name it covers (as the default too, with
   * `asDefault`). Throws when the PEM is not a certificate or the key does
   * not fit it.
   */
  add(pair: CertPair, asDefault = false): CertInfo {
    const info = certInfo(pair.cert);
    if (!new X509Certificate(pair.cert).checkPrivateKey(createPrivateKey(pair.key))) {
      throw new Error(`the key does not belong to the certificate for ${info.names.join(", ")}`);
    }
    const context = tls.createSecureContext({ cert: pair.cert, key: pair.key });
    const entry: Entry = { ...info, context, pair };
    for (const name of info.names) {
      const held = this.#byName.get(name);
      if (!held || held.notAfter <= entry.notAfter) this.#byName.set(name, entry);
    }
    if (asDefault) this.#default = entry;
    return info;
  }

  /** The context for a handshake asking for `serverName` (none: the default). */
  contextFor(serverName: string | undefined): tls.SecureContext | undefined {
    return this.#lookup(serverName)?.context ?? this.#default?.context;
  }

  /**
   * The certificate that would answer `host` by name (never the default),
   * with its validity: ACME leaves names alone that one covers and is not
   * near its end.
   */
  covering(host: string): CertInfo | undefined {
    const entry = this.#lookup(host);
    return entry && { names: entry.names, notBefore: entry.notBefore, notAfter: entry.notAfter };
  }

  /** Whether any certificate (or a default) is loaded. */
  get empty(): boolean {
    return this.#default === undefined && this.#byName.size === 0;
  }

  #lookup(host: string | undefined): Entry | undefined {
    if (host === undefined) return undefined;
    const exact = this.#byName.get(host);
    if (exact) return exact;
    const dot = host.indexOf(".");
    return dot > 0 ? this.#byName.get(`*.${host.slice(dot + 1)}`) : undefined;
  }
}
