/**
 * A real `server.ts` with web apps (`--http`, `--https`, `--domain
 * tunnel.test`, a wildcard certificate from a test CA), a group file for
 * `client.ts` with given apps, and the wait for a `ready` line's URLs.
 *
 * @module
 */

import { join } from "node:path";
import { type Proc, startServer } from "./harness.ts";
import { testCa } from "./http.ts";
import { makeTempDir, makeTempFileSync } from "./temp.ts";

export const WEB_TOKEN = "web-e2e-token";

/** A running web server and its ports. */
export interface WebServer extends AsyncDisposable {
  port: number;
  httpPort: number;
  httpsPort: number;
  caFile: string;
  caPem: string;
  proc: Proc;
}

/** Starts `server.ts` with `--http`, `--https` and `--domain tunnel.test`, and `args`. */
export async function webServer(
  args: string[] = [],
  env?: Record<string, string>,
): Promise<WebServer> {
  const dir = await makeTempDir({ prefix: "burrow-web-e2e-" });
  const ca = await testCa("e2e web CA");
  const wild = await ca.issue(["*.tunnel.test"]);
  await Deno.writeTextFile(join(dir, "wild.crt"), wild.cert);
  await Deno.writeTextFile(join(dir, "wild.key"), wild.key);
  await Deno.writeTextFile(join(dir, "ca.pem"), ca.caPem);
  const server = await startServer({
    token: WEB_TOKEN,
    args: [
      "--http",
      "127.0.0.1:0",
      "--https",
      "127.0.0.1:0",
      "--domain",
      "tunnel.test",
      "--https-cert",
      join(dir, "wild.crt"),
      "--https-key",
      join(dir, "wild.key"),
      ...args,
    ],
    ...(env ? { env } : {}),
  });
  const http = await server.proc.stdout.wait(/^http http:\/\/127\.0\.0\.1:(\d+)\/$/);
  const https = await server.proc.stdout.wait(/^https https:\/\/127\.0\.0\.1:(\d+)\/$/);
  return {
    port: server.port,
    httpPort: Number(http[1]),
    httpsPort: Number(https[1]),
    caFile: join(dir, "ca.pem"),
    caPem: ca.caPem,
    proc: server.proc,
    async [Symbol.asyncDispose]() {
      await server[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * A group file for `client.ts` with `apps` (YAML list items, indented by
 * two) and `more` top-level lines (e.g. `shared: true\n`).
 */
export function webGroupFile(
  serverPort: number,
  group: string,
  apps: string,
  more = "",
): string {
  const path = makeTempFileSync({ prefix: "burrow-web-group-", suffix: ".yaml" });
  Deno.writeTextFileSync(
    path,
    `server: 127.0.0.1:${serverPort}\ntoken: ${WEB_TOKEN}\ngroup: ${group}\n${more}apps:\n${apps}`,
  );
  return path;
}

/** The URLs of the client's `ready GROUP/APP` line (the first after line `from`). */
export async function webReady(
  client: Proc,
  group: string,
  app: string,
  from = 0,
): Promise<string[]> {
  const m = await client.stdout.wait(new RegExp(`^ready ${group}/${app} (.+)$`), 20_000, from)
    .catch((err) => {
      throw new Error(`${err.message}\nclient stderr:\n${client.stderr.all.slice(-10).join("\n")}`);
    });
  return (m[1] as string).split(" ");
}
