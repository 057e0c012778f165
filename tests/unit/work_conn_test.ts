/** How a joined user's end is told in its log line (`joinOutcome`). */

import assert from "node:assert/strict";
import { joinOutcome } from "../../lib/server/work_conn.ts";
import { MuxClosedError, StreamResetError } from "../../lib/transport/mux/mod.ts";

Deno.test("a user cut by this side's close of its tunnel is 'closed', not 'failed'", () => {
  assert.deepEqual(joinOutcome(undefined), { why: undefined, how: "closed" });
  assert.deepEqual(joinOutcome(new MuxClosedError("the mux session was closed")), {
    why: "its tunnel closed",
    how: "closed with its tunnel",
  });
  const broken = joinOutcome(new Error("broken pipe"));
  assert.deepEqual(broken, { why: "broken pipe", how: "failed (broken pipe)" });
});

Deno.test("a reset from the client's side is the app side resetting", () => {
  const out = joinOutcome(new StreamResetError(3, true, false, "app reset"));
  assert.deepEqual(out, {
    why: "the app side reset or failed",
    how: "closed: the app side reset or failed",
  });
});
