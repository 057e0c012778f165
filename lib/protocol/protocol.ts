/**
 * The wire protocol: the entry to `lib/protocol/`. Every connection a client
 * opens to the server starts with length-prefixed JSON frames (`frames.ts`);
 * what a frame may say depends on the connection's phase, and each phase has
 * its own message union and read function:
 *
 * - `handshake.ts`: the server's `challenge`, the client's first message
 *   (`hello`, `work_hello` or `query`), and the answer to a `hello`;
 * - `control.ts`: requests and notices on a control connection;
 * - `work.ts`: `start` and its answer on a work connection;
 * - `discovery.ts`: the answer to a `query`.
 *
 * `version.ts` holds the protocol version. The unions of everything one side
 * may send ({@linkcode ClientMessage}, {@linkcode ServerMessage}) are for
 * peers that speak the protocol by hand (tests, fuzzers); burrow's own
 * handlers read with their phase's function, so none meets a message that
 * cannot arrive where it is.
 *
 * @module
 */

import { z } from "zod";
import { parseIn, typesOf } from "./common.ts";
import { challenge, firstOptions, welcome } from "./handshake.ts";
import { clientControlOptions, serverControlOptions } from "./control.ts";
import { start, udpFlow } from "./work.ts";
import { services } from "./discovery.ts";

export * from "./frames.ts";
export * from "./version.ts";
export {
  MAX_ALLOW_FROM,
  MAX_FREE_RANGES,
  MAX_SERVE_SECONDS,
  MAX_SERVICES,
  NAME_PATTERN,
  type Refused,
} from "./common.ts";
export {
  type FirstMessage,
  type Greeting,
  HANDSHAKE_TIMEOUT_MS,
  type Hello,
  type HelloReply,
  parseFirstMessage,
  parseGreeting,
  parseHelloReply,
  type Query,
  type WorkHello,
} from "./handshake.ts";
export {
  BALANCE_POLICIES,
  type BalancePolicy,
  checkExposeExtras,
  type ClientControlMessage,
  type Expose,
  type FreePorts,
  type Health,
  parseClientControl,
  parseServerControl,
  type ServerControlMessage,
  type TunnelLimits,
  type UdpApp,
} from "./control.ts";
export {
  LAZY_ANSWER_MS,
  MAX_FLOW_ID,
  parseStart,
  parseWorkHeader,
  type Start,
  type UdpFlow,
  type WorkHeader,
} from "./work.ts";
export { type DiscoveryAnswer, parseDiscoveryAnswer, type Services } from "./discovery.ts";

// The all-phase unions are the phases' own lists put together, so a message is listed once.
const serverOptions = [
  challenge,
  welcome,
  ...serverControlOptions,
  start,
  udpFlow,
  services,
] as const;
const serverMessage = z.discriminatedUnion("type", serverOptions);
const serverTypes = typesOf(serverOptions);

/** Every message the server sends, in any phase, discriminated by `type`. */
export type ServerMessage = z.infer<typeof serverMessage>;

const clientOptions = [...firstOptions, ...clientControlOptions] as const;
const clientMessage = z.discriminatedUnion("type", clientOptions);
const clientTypes = typesOf(clientOptions);

/** Every message the client sends, in any phase, discriminated by `type`. */
export type ClientMessage = z.infer<typeof clientMessage>;

/** Validates a decoded frame as a server message of any phase. Throws `ProtocolError`. */
export function parseServerMessage(value: unknown): ServerMessage {
  return parseIn(serverMessage, serverTypes, value, "server");
}

/** Validates a decoded frame as a client message of any phase. Throws `ProtocolError`. */
export function parseClientMessage(value: unknown): ClientMessage {
  return parseIn(clientMessage, clientTypes, value, "client");
}
