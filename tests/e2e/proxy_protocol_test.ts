/**
 * PROXY protocol end to end with real processes: nginx (`listen ...
 * proxy_protocol`) as the local service behind a tunnel, users connecting
 * from other loopback addresses (127.0.0.2, 127.0.0.3, ::1) to a public port
 * on a dual-stack listener. nginx must see each user's own address and port
 * and the public address they reached, in its answer and in its access log,
 * for v1 and v2; an app without `proxy_protocol` gets the user's bytes and
 * nothing else.
 */

import assert from "node:assert/strict";
import { connect } from "node:net";
import {
  echoApp,
  echoThrough,
  groupFile,
  randomBytes,
  readyPort,
  sha256,
  startClient,
  startServer,
} from "../helpers/harness.ts";
import { missing, startProxyProtocolNginx } from "../helpers/third_party.ts";

const TOKEN = "e2e-pp-token-3a7d";

/** One HTTP/1.0 GET from `source` to `host:port`: the answer's body and the port it came from. */
function getFrom(
  source: string,
  host: string,
  port: number,
): Promise<{ body: string; sourcePort: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, localAddress: source });
    let text = "";
    let sourcePort = 0;
    socket.once("connect", () => {
      sourcePort = socket.localPort ?? 0;
      socket.write("GET / HTTP/1.0\r\nHost: test\r\n\r\n");
    });
    socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
    socket.once("error", reject);
    socket.once("close", () => {
      if (!/^HTTP\/1\.[01] 200 /.test(text)) return reject(new Error(`no 200: ${text}`));
      resolve({ body: text.trimEnd().split("\n").at(-1)!.trim(), sourcePort });
    });
  });
}

const nginxMissing = missing("nginx");

Deno.test({
  name: `nginx behind the tunnel sees each user's real address, v1 and v2${
    nginxMissing ? ` (skipped: ${nginxMissing})` : ""
  }`,
  ignore: nginxMissing !== undefined,
  async fn() {
    await using nginx = await startProxyProtocolNginx();
    const echo = echoApp();
    // A dual-stack public host: IPv4 users arrive as ::ffff:127.0.0.x and must be shown as IPv4.
    const server = await startServer({ token: TOKEN, args: ["--public-host", "::"] });
    const client = startClient(groupFile({
      server: `127.0.0.1:${server.port}`,
      token: TOKEN,
      group: "pp",
      apps: [
        { name: "web-v1", local: `127.0.0.1:${nginx.port}`, proxy_protocol: "v1" },
        { name: "web-v2", local: `127.0.0.1:${nginx.port}`, proxy_protocol: "v2" },
        { name: "plain", local: echo.addr },
      ],
    }));
    try {
      const v1 = await readyPort(client, "pp", "web-v1");
      const v2 = await readyPort(client, "pp", "web-v2");
      const expected: string[] = [];
      for (
        const [source, host] of [["127.0.0.2", "127.0.0.1"], ["127.0.0.3", "127.0.0.1"], [
          "::1",
          "::1",
        ]]
      ) {
        for (const port of [v1, v2]) {
          const { body, sourcePort } = await getFrom(source!, host!, port);
          assert.equal(body, `${source} ${sourcePort} ${host} ${port}`, `${source} to ${port}`);
          expected.push(`${source}:${sourcePort} > ${host}:${port}`);
        }
      }
      assert.deepEqual(await nginx.accessLog(), expected);
      // Without proxy_protocol the app gets the user's bytes exactly, no header.
      const data = randomBytes(256 * 1024);
      assert.equal(
        await echoThrough(await readyPort(client, "pp", "plain"), data),
        await sha256(data),
      );
    } finally {
      await client.stop();
      await server.proc.stop();
      echo.close();
    }
  },
});
