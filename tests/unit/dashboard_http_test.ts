/**
 * The dashboard's options (`lib/dashboard/http.ts`): off loopback it needs a password.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkDashboardOptions } from "../../lib/dashboard/http.ts";
import { isLoopback } from "../../lib/util/addr.ts";
import { ConfigError } from "../../lib/util/errors.ts";

Deno.test("a dashboard off loopback needs a password; loopback is open", () => {
  assert.ok(isLoopback("127.0.0.1") && isLoopback("localhost") && isLoopback("::1"));
  assert.ok(!isLoopback("0.0.0.0") && !isLoopback("::") && !isLoopback("192.0.2.1"));
  assert.throws(
    () => checkDashboardOptions({ bind: "0.0.0.0:7500" }),
    (err: Error) =>
      err instanceof ConfigError && /refusing to serve on 0\.0\.0\.0:7500 without a password/
        .test(err.message),
  );
  assert.throws(() => checkDashboardOptions({ bind: "[::]:7500" }), ConfigError);
  assert.throws(() => checkDashboardOptions({ bind: "nope" }), /dashboard\.bind/);
  assert.throws(() => checkDashboardOptions({ bind: "0.0.0.0:1", password: "" }), /empty/);
  assert.equal(checkDashboardOptions({ bind: "0.0.0.0:1", password: "p" }).user, "admin");
  assert.equal(checkDashboardOptions({ bind: "127.0.0.1:0" }).password, undefined);
});
