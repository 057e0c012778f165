/**
 * The client's status table (`lib/client/status_table.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { formatStatusTable, formatTable } from "../../lib/client/status_table.ts";

Deno.test("the status table lines up its columns", () => {
  assert.equal(
    formatTable(["A", "BB", "C"], [["long-name", "x", "end"], ["s", "yyyy", "e"]]),
    "A          BB    C\nlong-name  x     end\ns          yyyy  e",
  );
  const table = formatStatusTable({
    version: "0.1.0",
    group: "lab",
    server: { addr: "relay:7700", state: "reconnecting", since: "", retries: 3, reconnects: 0 },
    apps: [{
      name: "ssh",
      local: "127.0.0.1:22",
      remotePort: 6022,
      publicAddr: null,
      state: "pending",
      connections: 0,
      connectionsTotal: 0,
      bytesIn: 0,
      bytesOut: 0,
    }],
  });
  assert.equal(
    table,
    "lab via relay:7700 (reconnecting)\nAPP  LOCAL         PUBLIC  STATE\nssh  127.0.0.1:22  -       pending",
  );
});
