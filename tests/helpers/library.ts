/**
 * Servers and clients started in this process through the library
 * (`mod.ts`), for tests that need hooks, options or figures the programs do
 * not offer. Both handles are `AsyncDisposable`: `await using` closes them.
 *
 * @module
 */

import {
  type BurrowClient,
  type BurrowServer,
  type ClientOptions,
  type ServerOptions,
  startClient,
  startServer,
} from "../../mod.ts";
import { portBlock } from "./ports.ts";

/** A server handle that `await using` closes. */
export type TestServer = BurrowServer & AsyncDisposable & {
  /** `127.0.0.1:PORT` of the control listener, as clients dial it. */
  readonly dial: string;
};

/** A client handle that `await using` closes. */
export type TestClient = BurrowClient & AsyncDisposable;

/** Options of {@linkcode libraryServer}: the server's, with loopback defaults. */
export type TestServerOptions = Partial<ServerOptions> & {
  /** Size of the fresh block of public ports, when `ports` is not given. */
  portCount?: number;
};

/**
 * Starts a server on 127.0.0.1 (any free control port), with a fresh block
 * of public ports and 127.0.0.1 as the public host unless `o` says otherwise.
 */
export async function libraryServer(o: TestServerOptions = {}): Promise<TestServer> {
  const { portCount, ...options } = o;
  const server = await startServer({
    bind: "127.0.0.1:0",
    publicHost: "127.0.0.1",
    ports: portBlock(portCount).spec,
    ...options,
  });
  return Object.assign(server, {
    dial: `127.0.0.1:${server.addr.port}`,
    [Symbol.asyncDispose]: () => server.close(),
  });
}

/** Starts a client of `server` (its TLS settings unless `o.tls` is given). */
export async function libraryClient(
  server: TestServer,
  o: Omit<ClientOptions, "server">,
): Promise<TestClient> {
  return asTestClient(await startClient({ server: server.dial, ...o }));
}

/** Makes a client that `await using` closes. */
export function asTestClient(client: BurrowClient): TestClient {
  return Object.assign(client, { [Symbol.asyncDispose]: () => client.close() });
}

/** The outcome of a login: "ok" (the client is closed again at once) or the refusal's code. */
export function loginOutcome(client: Promise<BurrowClient>): Promise<string> {
  return client.then(
    async (c) => {
      await c.close();
      return "ok";
    },
    (err: Error & { code?: string }) => err.code ?? String(err),
  );
}
