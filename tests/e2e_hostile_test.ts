/**
 * Peers that misbehave at the TCP level must never take a listener down:
 * connections reset before they are accepted, on the control port and on
 * public ports.
 */

import assert from "node:assert/strict";
import {
  connectAndReset,
  echoApp,
  echoThrough,
  groupFile,
  randomBytes,
  readyPort,
  sha256,
  startClient,
  startServer,
} from "./helpers/harness.ts";

const TOKEN = "hostile-token-Pw4";

Deno.test("connections reset before accept stop neither the control listener nor a public port", async () => {
  const app = echoApp();
  const server = await startServer({ token: TOKEN });
  const file = (group: string) =>
    groupFile({
      server: `127.0.0.1:${server.port}`,
      token: TOKEN,
      group,
      apps: [{ name: "echo", local: app.addr }],
    });
  const first = startClient(file("first"));
  let second: ReturnType<typeof startClient> | undefined;
  try {
    const port = await readyPort(first, "first", "echo");
    for (let i = 0; i < 20; i++) {
      await connectAndReset(server.port);
      await connectAndReset(port);
    }
    await server.proc.stderr.wait(/accept failed: .*not connected/i);
    // The control listener still accepts and registers a new group...
    second = startClient(file("second"));
    const port2 = await readyPort(second, "second", "echo");
    // ...and both public ports still carry bytes exactly.
    for (const p of [port, port2]) {
      const data = randomBytes(200_000);
      assert.equal(await echoThrough(p, data), await sha256(data));
    }
  } finally {
    await second?.stop();
    await first.stop();
    await server.proc.stop();
    app.close();
  }
});
