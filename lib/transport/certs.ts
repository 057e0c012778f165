/**
 * Certificates as both sides handle them: PEM blocks in and out, and the
 * SHA-256 fingerprint that names a certificate authority
 * (`sha256:` and 64 lowercase hex digits).
 *
 * @module
 */

import { X509Certificate } from "node:crypto";

/** The name every generated server certificate carries; clients that pin the CA verify it. */
export const GENERATED_SERVER_NAME = "burrow-server";

/** How the subject of every generated CA starts; 8 hex digits follow. */
export const GENERATED_CA_PREFIX = "burrow CA ";

const GENERATED_CA_NAME = /^CN=burrow CA [0-9a-f]{8}$/;

/**
 * True when the first certificate in `pem` is a CA that burrow generated.
 * Read with `node:crypto`, so a client never loads the certificate builder.
 */
export function isGeneratedCa(pem: string): boolean {
  const der = pemCertificates(pem)[0];
  if (der === undefined) return false;
  try {
    return GENERATED_CA_NAME.test(new X509Certificate(der).subject.trim());
  } catch {
    return false;
  }
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g;

/** The DER bytes of every certificate in a PEM text, in order. */
export function pemCertificates(pem: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const match of pem.matchAll(PEM_BLOCK)) {
    const b64 = (match[1] ?? "").replace(/\s+/g, "");
    try {
      out.push(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    } catch {
      // not base64: skipped, so the caller sees fewer certificates
    }
  }
  return out;
}

/** One certificate as PEM. */
export function derToPem(der: Uint8Array): string {
  let b64 = "";
  for (let i = 0; i < der.length; i += 3 * 1024) {
    b64 += btoa(String.fromCharCode(...der.subarray(i, i + 3 * 1024)));
  }
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----\n`;
}

/** SHA-256 of DER bytes as 64 lowercase hex digits. */
export async function sha256Hex(der: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der as BufferSource));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** `sha256:HEX`, the form burrow prints and accepts. */
export function formatFingerprint(hex: string): string {
  return `sha256:${hex}`;
}

/**
 * A fingerprint as a user may write it (`sha256:` optional, colons or not,
 * any case) reduced to 64 lowercase hex digits, or undefined if it is not one.
 */
export function normalizeFingerprint(input: string): string | undefined {
  const hex = input.trim().replace(/^sha256:/i, "").replace(/:/g, "").toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}
