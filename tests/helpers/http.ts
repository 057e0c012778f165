/**
 * Helpers for the HTTP edge and inspector tests: a real local HTTP app
 * (`node:http`), raw requests over TCP, curl (Debian's, for HTTP/2 and
 * `--resolve`), and certificates for DNS names signed by a test CA.
 *
 * @module
 */

import http from "node:http";
import * as x509 from "@peculiar/x509";

/** A local app listening on 127.0.0.1. */
export interface HttpApp extends AsyncDisposable {
  port: number;
  server: http.Server;
  close(): Promise<void>;
}

/** Starts a `node:http` app on a free loopback port. */
export async function httpApp(
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<HttpApp> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as { port: number }).port;
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return { port, server, close, [Symbol.asyncDispose]: close };
}

/** An app that answers each request with JSON telling what it received. */
export function echoHeadersApp(name: string): Promise<HttpApp> {
  return httpApp((req, res) => {
    let body = 0;
    req.on("data", (c: Uint8Array) => body += c.length);
    req.on("end", () => {
      const text = JSON.stringify({
        app: name,
        method: req.method,
        url: req.url,
        rawHeaders: req.rawHeaders,
        body,
      });
      res.writeHead(200, {
        "content-type": "application/json",
        "content-length": String(new TextEncoder().encode(text).length),
        "x-app": name,
        "connection": "keep-alive, x-hop",
        "x-hop": "must not pass",
      });
      res.end(text);
    });
  });
}

/** Sends `request` on a fresh TCP connection and reads until the server closes it. */
export async function rawExchange(
  port: number,
  request: string | Uint8Array,
  timeoutMs = 10_000,
): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const bytes = typeof request === "string" ? new TextEncoder().encode(request) : request;
    let off = 0;
    while (off < bytes.length) off += await conn.write(bytes.subarray(off));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    const deadline = setTimeout(() => conn.close(), timeoutMs);
    try {
      while (true) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) break;
        chunks.push(buf.slice(0, n));
      }
    } finally {
      clearTimeout(deadline);
    }
    const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    return new TextDecoder().decode(all);
  } finally {
    try {
      conn.close();
    } catch {
      // closed by the deadline
    }
  }
}

/** The status codes of every response in a raw HTTP/1.1 exchange, in order. */
export function statuses(raw: string): number[] {
  return [...raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

/** Whether Debian's curl is installed. */
export const CURL = await Deno.stat("/usr/bin/curl").then(() => "/usr/bin/curl", () => undefined);

/** Runs curl with `args`; returns its exit code, stdout and stderr. */
export async function curl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  if (!CURL) throw new Error("curl is not installed");
  const result = await new Deno.Command(CURL, { args: ["-sS", "--max-time", "20", ...args] })
    .output();
  const decoder = new TextDecoder();
  return {
    code: result.code,
    out: decoder.decode(result.stdout),
    err: decoder.decode(result.stderr),
  };
}

/** A test CA and leaf certificates it signs for DNS names. */
export interface TestCa {
  caPem: string;
  /** A certificate for DNS `names` (the first is also its CN), with its key. */
  issue(names: string[], days?: number): Promise<{ cert: string; key: string }>;
  /** A certificate for any subjectAltName entries (DNS names, IPs). */
  issueFor(
    names: { type: "dns" | "ip"; value: string }[],
    days?: number,
  ): Promise<{ cert: string; key: string }>;
}

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

async function keyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** Makes a CA named `name`. */
export async function testCa(name: string): Promise<TestCa> {
  const now = Date.now();
  const caKeys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: `CN=${name}`,
    notBefore: new Date(now - 86_400_000),
    notAfter: new Date(now + 30 * 86_400_000),
    signingAlgorithm: ALG,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  }, crypto);
  let serial = 2;
  const issueFor: TestCa["issueFor"] = async (names, days = 30) => {
    const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]);
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: (serial++).toString(16).padStart(2, "0"),
      subject: `CN=${names[0]?.value}`,
      issuer: ca.subject,
      notBefore: new Date(now - 86_400_000),
      notAfter: new Date(now + days * 86_400_000),
      signingAlgorithm: ALG,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(names),
      ],
    }, crypto);
    return { cert: leaf.toString("pem"), key: await keyPem(keys.privateKey) };
  };
  return {
    caPem: ca.toString("pem"),
    issue: (names, days) => issueFor(names.map((value) => ({ type: "dns", value })), days),
    issueFor,
  };
}

/** Resolves when `ok()` holds, polling every 20 ms; fails after `ms` naming `what`. */
export async function until(ok: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One response read off a kept-alive connection. */
export interface RawResponse {
  status: number;
  head: string;
  body: string;
}

/**
 * A raw HTTP/1.1 connection that sends one request at a time and reads each
 * response by its `Content-Length` (which every response in these tests has).
 */
export class KeepAlive implements Disposable {
  #conn: Deno.Conn;
  #pending = new Uint8Array(0);

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  static async open(port: number): Promise<KeepAlive> {
    return new KeepAlive(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Sends `request` and reads its response. */
  async send(request: string): Promise<RawResponse> {
    const bytes = new TextEncoder().encode(request);
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
    let end = -1;
    while ((end = indexOf(this.#pending, "\r\n\r\n")) < 0) await this.#fill();
    const head = new TextDecoder().decode(this.#pending.subarray(0, end));
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    while (this.#pending.length < end + 4 + length) await this.#fill();
    const body = new TextDecoder().decode(this.#pending.subarray(end + 4, end + 4 + length));
    this.#pending = this.#pending.slice(end + 4 + length);
    return { status: Number(head.slice(9, 12)), head, body };
  }

  async #fill(): Promise<void> {
    const buf = new Uint8Array(65536);
    const n = await this.#conn.read(buf);
    if (n === null) throw new Error("connection closed before a whole response");
    const joined = new Uint8Array(this.#pending.length + n);
    joined.set(this.#pending);
    joined.set(buf.subarray(0, n), this.#pending.length);
    this.#pending = joined;
  }

  [Symbol.dispose](): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

function indexOf(bytes: Uint8Array, text: string): number {
  const needle = new TextEncoder().encode(text);
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** A response read whole by {@linkcode request}. */
export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

/**
 * One request with `node:http` (which, unlike `fetch`, sends the `Host`
 * given), on a fresh connection; the body is read whole.
 */
export function request(
  port: number,
  host: string,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      hostname: "127.0.0.1",
      port,
      method: options.method ?? "GET",
      path: options.path ?? "/",
      headers: { host, ...options.headers },
      agent: false,
    }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => body += c);
      res.on(
        "end",
        () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body,
          }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

/**
 * Starts a request with `node:http` and resolves with the response as a
 * stream, once its head arrived. `body`, if given, writes the request body
 * (with backpressure) before the request ends.
 */
export function streamRequest(
  port: number,
  host: string,
  options: {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: (req: http.ClientRequest) => Promise<void>;
  } = {},
): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      hostname: "127.0.0.1",
      port,
      method: options.method ?? "GET",
      path: options.path ?? "/",
      headers: { host, ...options.headers },
      agent: false,
    }, resolve);
    req.on("error", reject);
    if (options.body) options.body(req).then(() => req.end(), reject);
    else req.end();
  });
}

/** Writes `chunk` `times` times to `stream`, waiting for `drain` when its buffer is full. */
export async function writeRepeated(
  stream: NodeJS.WritableStream,
  chunk: Uint8Array,
  times: number,
): Promise<void> {
  for (let i = 0; i < times; i++) {
    if (!stream.write(chunk)) await new Promise((r) => stream.once("drain", r));
  }
}
