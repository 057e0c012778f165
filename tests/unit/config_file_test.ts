/**
 * Reading a config file's YAML (`lib/config/file.ts`): errors stay on one
 * line and quote nothing from the file.
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseYaml } from "../../lib/config/file.ts";
import { ConfigError } from "../../lib/util/errors.ts";

Deno.test("a YAML syntax error quotes nothing from the file and stays on one line", () => {
  // Found by the long fuzz runs: yaml quotes the offending text, which may be
  // a token that YAML read as syntax (`!ab!cd` is a tag) and may hold U+2028,
  // a line terminator that its JSON escapes leave as it is.
  const cases: Array<[string, string]> = [
    [
      "lab\n#\n\u2028\ntoken: x",
      "g.yaml: line 3: YAML syntax error: unexpected text here",
    ],
    [
      "server: 127.0.0.1:7700\ntoken: !s3cret!tail\n",
      "g.yaml: line 2: YAML syntax error: unknown tag (quote a value that starts with !)",
    ],
    [
      "token: !s3cret!\n",
      "g.yaml: line 1: YAML syntax error: unknown tag (quote a value that starts with !)",
    ],
    [
      'token: "s3cret\\q"\n',
      "g.yaml: line 1: YAML syntax error: invalid escape sequence in a double-quoted value",
    ],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseYaml("g.yaml", text), (err) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.message, message);
      return true;
    });
  }
});
