/**
 * Test certificates: an operator's own CA and a leaf it signed for IP
 * 127.0.0.1 (no `burrow-server` name), as a real deployment with its own PKI
 * would have them.
 *
 * @module
 */

import * as x509 from "@peculiar/x509";

/** A CA and a certificate signed by it for IP 127.0.0.1, as PEM texts. */
export interface OwnPki {
  caPem: string;
  caDer: Uint8Array<ArrayBuffer>;
  leafPem: string;
  leafKeyPem: string;
}

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

async function keyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** A CA named `caName` and a leaf for 127.0.0.1 that it signed, valid for 30 days. */
export async function makeOwnPki(caName: string): Promise<OwnPki> {
  const notBefore = new Date(Date.now() - 86_400_000);
  const notAfter = new Date(Date.now() + 30 * 86_400_000);
  const caKeys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: `CN=${caName}`,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  }, crypto);
  const leafKeys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: "02",
    subject: "CN=127.0.0.1",
    issuer: ca.subject,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: "ip", value: "127.0.0.1" }]),
      await x509.AuthorityKeyIdentifierExtension.create(ca, false, crypto),
    ],
  }, crypto);
  return {
    caPem: ca.toString("pem") + "\n",
    caDer: new Uint8Array(ca.rawData),
    leafPem: leaf.toString("pem") + "\n",
    leafKeyPem: await keyPem(leafKeys.privateKey),
  };
}
