/**
 * The server's event log (`lib/dashboard/events.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { EventLog } from "../../lib/dashboard/events.ts";

Deno.test("the event log is bounded, numbered, and tells its listeners", () => {
  const log = new EventLog(2);
  const heard: number[] = [];
  const stop = log.subscribe((e) => heard.push(e.id));
  for (const group of ["a", "b", "c"]) log.add({ kind: "connect", group, message: group });
  stop();
  log.add({ kind: "disconnect", group: "a", message: "gone" });
  assert.deepEqual(heard, [1, 2, 3]);
  assert.deepEqual(log.list().map((e) => e.id), [3, 4]);
  assert.deepEqual(log.list(3).map((e) => e.message), ["gone"]);
});
