/**
 * The server's TLS identity. Either the operator's own certificate chain and
 * key (for example a public certificate), or a small certificate authority of
 * the server's own, made on first start and kept in the state folder: an
 * ECDSA P-256 CA (20 years) and a server certificate signed by it, renewed
 * from the same CA when it nears its end, so the fingerprint clients pinned
 * never changes.
 *
 * @module
 */

import * as x509 from "@peculiar/x509";
import { join } from "node:path";
import type { Logger } from "@logtape/logtape";
import { ConfigError } from "../util/errors.ts";
import { ensurePrivateDir, writeFileAtomic } from "../util/state_dir.ts";
import { GENERATED_CA_PREFIX, GENERATED_SERVER_NAME, pemCertificates, sha256Hex } from "./certs.ts";

/** What `Deno.listenTls` needs, plus the fingerprint to print. */
export interface ServerTlsMaterial {
  /** PEM chain: the server certificate first, then its issuers. */
  cert: string;
  /** PEM private key. */
  key: string;
  /** SHA-256 of the top certificate of the chain (the CA), 64 hex digits. */
  fingerprint: string;
  /** The folder of a generated CA, or undefined for the operator's own certificate. */
  generatedIn?: string;
}

/** The operator's own certificate, as files. */
export interface OwnCertificate {
  certFile: string;
  keyFile: string;
}

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;
const CA_DAYS = 20 * 365;
const SERVER_DAYS = 825;
const RENEW_DAYS = 30;

/** Loads the operator's certificate and key, checking they are PEM. */
export async function loadOwnCertificate(own: OwnCertificate): Promise<ServerTlsMaterial> {
  const cert = await readPem(own.certFile, "tls.cert");
  const key = await readPem(own.keyFile, "tls.key");
  const certs = pemCertificates(cert);
  if (certs.length === 0) {
    throw new ConfigError(`${own.certFile}: tls.cert: no PEM certificate in the file`);
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) {
    throw new ConfigError(`${own.keyFile}: tls.key: no PEM private key in the file`);
  }
  return { cert, key, fingerprint: await sha256Hex(certs[certs.length - 1]!) };
}

async function readPem(path: string, key: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound ? "no such file" : (err as Error).message;
    throw new ConfigError(`${key}: cannot read ${path}: ${why}`);
  }
}

/**
 * The generated identity in `stateDir/tls`: loaded when it exists, made when
 * it does not. Two servers starting at once on one folder agree: the folder is
 * made whole elsewhere and renamed into place, and the loser loads the winner's.
 */
export async function generatedIdentity(stateDir: string, log: Logger): Promise<ServerTlsMaterial> {
  const dir = join(stateDir, "tls");
  try {
    await ensurePrivateDir(stateDir);
  } catch (err) {
    throw new ConfigError(`state_dir: cannot create ${stateDir}: ${(err as Error).message}`);
  }
  if (!(await exists(join(dir, "ca.pem")))) {
    const staging = join(stateDir, `.tls-${crypto.randomUUID().slice(0, 8)}`);
    try {
      await ensurePrivateDir(staging);
      await writeIdentity(staging, await makeCa());
      await Deno.rename(staging, dir);
      log.info(`made a new certificate authority in ${dir}`);
    } catch (err) {
      await Deno.remove(staging, { recursive: true }).catch(() => {});
      if (!(await exists(join(dir, "ca.pem")))) {
        throw new ConfigError(`state_dir: cannot write ${dir}: ${(err as Error).message}`);
      }
      // another server made it first: use theirs
    }
  }
  return await loadIdentity(dir, log);
}

/** A CA and server certificate made in memory for this run only (tests, demos). */
export async function ephemeralIdentity(): Promise<ServerTlsMaterial> {
  const id = await makeCa();
  return {
    cert: `${id.server.toString("pem")}\n${id.ca.toString("pem")}\n`,
    key: await keyPem(id.serverKey),
    fingerprint: await sha256Hex(new Uint8Array(id.ca.rawData)),
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw new ConfigError(`state_dir: cannot read ${path}: ${(err as Error).message}`);
  }
}

interface Identity {
  ca: x509.X509Certificate;
  caKey: CryptoKey;
  server: x509.X509Certificate;
  serverKey: CryptoKey;
}

async function makeCa(): Promise<Identity> {
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const notBefore = new Date(Date.now() - DAY_MS);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${GENERATED_CA_PREFIX}${crypto.randomUUID().slice(0, 8)}`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + CA_DAYS * DAY_MS),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  }, crypto);
  const server = await signServer(ca, keys.privateKey);
  return { ca, caKey: keys.privateKey, ...server };
}

/** A server certificate for the generated names, signed by the CA. */
async function signServer(
  ca: x509.X509Certificate,
  caKey: CryptoKey,
): Promise<{ server: x509.X509Certificate; serverKey: CryptoKey }> {
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const notBefore = new Date(Date.now() - DAY_MS);
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${GENERATED_SERVER_NAME}`,
    issuer: ca.subject,
    notBefore,
    notAfter: new Date(notBefore.getTime() + SERVER_DAYS * DAY_MS),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: GENERATED_SERVER_NAME },
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
        { type: "ip", value: "::1" },
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(ca, false, crypto),
    ],
  }, crypto);
  return { server, serverKey: keys.privateKey };
}

function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0]! &= 0x7f; // positive
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function keyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

async function writeIdentity(dir: string, id: Identity): Promise<void> {
  await writeFileAtomic(join(dir, "ca-key.pem"), await keyPem(id.caKey));
  await writeFileAtomic(join(dir, "server-key.pem"), await keyPem(id.serverKey));
  await writeFileAtomic(join(dir, "server.pem"), id.server.toString("pem") + "\n", 0o644);
  // ca.pem last: its presence means the folder is complete.
  await writeFileAtomic(join(dir, "ca.pem"), id.ca.toString("pem") + "\n", 0o644);
}

async function loadIdentity(dir: string, log: Logger): Promise<ServerTlsMaterial> {
  const read = async (name: string) => {
    try {
      return await Deno.readTextFile(join(dir, name));
    } catch (err) {
      throw new ConfigError(`state_dir: cannot read ${join(dir, name)}: ${(err as Error).message}`);
    }
  };
  const caPem = await read("ca.pem");
  let serverPem = await read("server.pem");
  let serverKey = await read("server-key.pem");
  const caDer = pemCertificates(caPem)[0];
  const leafDer = pemCertificates(serverPem)[0];
  if (caDer === undefined || leafDer === undefined) {
    throw new ConfigError(
      `state_dir: ${dir} holds no valid certificate; move it away to start anew`,
    );
  }
  const leaf = new x509.X509Certificate(leafDer as BufferSource);
  if (leaf.notAfter.getTime() - Date.now() < RENEW_DAYS * DAY_MS) {
    const ca = new x509.X509Certificate(caDer as BufferSource);
    const caKey = await crypto.subtle.importKey(
      "pkcs8",
      x509.PemConverter.decodeFirst(await read("ca-key.pem")),
      ALG,
      false,
      ["sign"],
    );
    const renewed = await signServer(ca, caKey);
    serverKey = await keyPem(renewed.serverKey);
    serverPem = renewed.server.toString("pem") + "\n";
    await writeFileAtomic(join(dir, "server-key.pem"), serverKey);
    await writeFileAtomic(join(dir, "server.pem"), serverPem, 0o644);
    log.info(`renewed the server certificate in ${dir} (same certificate authority)`);
  }
  return {
    cert: `${serverPem.trim()}\n${caPem.trim()}\n`,
    key: serverKey,
    fingerprint: await sha256Hex(caDer),
    generatedIn: dir,
  };
}
