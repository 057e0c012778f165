/**
 * `proxy_protocol: v1|v2` on `type: tls` apps (passed through by SNI on
 * `--https`), with the real programs: the client writes the PROXY header,
 * naming the user's real address and port and the public `--https` address
 * they reached, before the user's first byte, and the user's bytes follow
 * exactly (checked with our own parser against a ClientHello replayed
 * byte for byte); and nginx (`listen ... ssl proxy_protocol`) behind the
 * tunnel sees each user's own address, in its answer and its access log.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "node:net";
import tls from "node:tls";
import { startClient } from "../helpers/harness.ts";
import { testCa } from "../helpers/http.ts";
import { missing, startProxyProtocolNginx } from "../helpers/third_party.ts";
import { webGroupFile, webReady, webServer } from "../helpers/web_server.ts";
import { parseProxyHeader, type ProxyHeader } from "../../lib/tunnel/proxy_protocol.ts";

/** The first TLS record a real client sends for `servername` (its ClientHello), captured. */
async function captureHello(servername: string): Promise<Uint8Array> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const socket = tls.connect({ host: "127.0.0.1", port: listener.addr.port, servername });
  socket.on("error", () => {});
  const conn = await listener.accept();
  try {
    let bytes = new Uint8Array(0);
    const buf = new Uint8Array(65536);
    while (bytes.length < 5 || bytes.length < 5 + ((bytes[3]! << 8) | bytes[4]!)) {
      const n = await conn.read(buf);
      if (n === null) throw new Error("the TLS client closed before its ClientHello");
      const joined = new Uint8Array(bytes.length + n);
      joined.set(bytes);
      joined.set(buf.subarray(0, n), bytes.length);
      bytes = joined;
    }
    return bytes.subarray(0, 5 + ((bytes[3]! << 8) | bytes[4]!));
  } finally {
    socket.destroy();
    conn.close();
  }
}

/** What a service behind the tunnel got: the header, then the bytes after it. */
interface Received {
  header: ProxyHeader;
  rest: Uint8Array;
}

/** A service that reads a PROXY header and then `follow` bytes, records them and answers `ok`. */
function headerService(follow: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const got: Received[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      (async () => {
        let bytes = new Uint8Array(0);
        const buf = new Uint8Array(65536);
        let header: ProxyHeader | undefined;
        while (header === undefined || bytes.length < header.length + follow) {
          const n = await conn.read(buf);
          if (n === null) return;
          const joined = new Uint8Array(bytes.length + n);
          joined.set(bytes);
          joined.set(buf.subarray(0, n), bytes.length);
          bytes = joined;
          const parsed = header === undefined ? parseProxyHeader(bytes) : undefined;
          if (parsed?.kind === "invalid") throw new Error(parsed.reason);
          if (parsed?.kind === "header") header = parsed.header;
        }
        got.push({ header, rest: bytes.slice(header.length) });
        await conn.write(new TextEncoder().encode("ok"));
      })().catch(() => {}).finally(() => conn.close());
    }
  })();
  return {
    port: listener.addr.port,
    got,
    async close() {
      listener.close();
      await serving.catch(() => {});
    },
  };
}

/** Sends `bytes` from `source` to 127.0.0.1:`port`; resolves to the answer and the port used. */
function sendFrom(
  source: string,
  port: number,
  bytes: Uint8Array,
): Promise<{ answer: string; sourcePort: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, localAddress: source });
    let answer = "";
    let sourcePort = 0;
    socket.once("connect", () => {
      sourcePort = socket.localPort ?? 0;
      socket.write(bytes);
    });
    socket.on("data", (c: Uint8Array) => answer += new TextDecoder().decode(c));
    socket.once("error", reject);
    socket.once("close", () => resolve({ answer, sourcePort }));
  });
}

/** A tls app entry with `proxy_protocol`. */
function ppApp(name: string, port: number, version: string): string {
  return `  - name: ${name}\n    type: tls\n    local: 127.0.0.1:${port}\n    subdomain: ${name}\n` +
    `    proxy_protocol: ${version}\n`;
}

Deno.test("a tls app with proxy_protocol v1 and v2: the header names the user and the --https address, then the user's bytes exactly", async () => {
  const hellos = {
    v1: await captureHello("pp1.tunnel.test"),
    v2: await captureHello("pp2.tunnel.test"),
  };
  const v1 = headerService(hellos.v1.length);
  const v2 = headerService(hellos.v2.length);
  try {
    await using s = await webServer();
    await using client = startClient(
      webGroupFile(s.port, "pp", ppApp("pp1", v1.port, "v1") + ppApp("pp2", v2.port, "v2")),
    );
    await webReady(client, "pp", "pp1");
    await webReady(client, "pp", "pp2");
    for (const [version, service] of [["v1", v1], ["v2", v2]] as const) {
      for (const source of ["127.0.0.2", "127.0.0.3"]) {
        const { answer, sourcePort } = await sendFrom(source, s.httpsPort, hellos[version]);
        assert.equal(answer, "ok", `${version} from ${source}`);
        const got = service.got.shift();
        assert.ok(got, `${version}: the service got a header`);
        assert.equal(got.header.version, version);
        assert.equal(got.header.command, "proxy");
        assert.deepEqual(got.header.addresses, {
          source: { hostname: source, port: sourcePort },
          destination: { hostname: "127.0.0.1", port: s.httpsPort },
        });
        assert.deepEqual(got.rest, hellos[version], "the ClientHello follows, byte for byte");
      }
    }
  } finally {
    await v1.close();
    await v2.close();
  }
});

const nginxMissing = missing("nginx");

Deno.test({
  name: `nginx (ssl proxy_protocol) behind a tls app sees each user's real address, v1 and v2${
    nginxMissing ? ` (skipped: ${nginxMissing})` : ""
  }`,
  ignore: nginxMissing !== undefined,
  async fn() {
    const ca = await testCa("nginx site CA");
    const pair = await ca.issue(["ngx1.tunnel.test", "ngx2.tunnel.test"]);
    await using nginx = await startProxyProtocolNginx(pair);
    await using s = await webServer();
    await using client = startClient(webGroupFile(
      s.port,
      "ngx",
      ppApp("ngx1", nginx.port, "v1") + ppApp("ngx2", nginx.port, "v2"),
    ));
    await webReady(client, "ngx", "ngx1");
    await webReady(client, "ngx", "ngx2");
    const expected: string[] = [];
    for (const name of ["ngx1.tunnel.test", "ngx2.tunnel.test"]) {
      for (const source of ["127.0.0.2", "127.0.0.3"]) {
        const { body, sourcePort } = await httpsFrom(source, s.httpsPort, name, ca.caPem);
        assert.equal(body, `${source} ${sourcePort} 127.0.0.1 ${s.httpsPort}`, `${name} ${source}`);
        expected.push(`${source}:${sourcePort} > 127.0.0.1:${s.httpsPort}`);
      }
    }
    assert.deepEqual(await nginx.accessLog(), expected);
  },
});

/** One HTTPS/1.0 GET of `name` from `source` through --https: the body and the port used. */
function httpsFrom(
  source: string,
  port: number,
  name: string,
  ca: string,
): Promise<{ body: string; sourcePort: number }> {
  return new Promise((resolve, reject) => {
    const raw = connect({ host: "127.0.0.1", port, localAddress: source });
    raw.once("error", reject);
    raw.once("connect", () => {
      const sourcePort = raw.localPort ?? 0;
      const socket = tls.connect({ socket: raw, servername: name, ca }, () => {
        socket.write(`GET / HTTP/1.0\r\nHost: ${name}\r\n\r\n`);
      });
      let text = "";
      socket.setEncoding("utf8");
      socket.on("data", (c: string) => text += c);
      socket.once("error", reject);
      socket.once("end", () => {
        if (!/^HTTP\/1\.[01] 200 /.test(text)) return reject(new Error(`no 200: ${text}`));
        resolve({ body: text.trimEnd().split("\n").at(-1)!.trim(), sourcePort });
      });
    });
  });
}
