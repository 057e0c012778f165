/**
 * fast-check arbitraries for every wire message of `lib/protocol/protocol.ts`, valid
 * by construction, and for out-of-range values of every bounded field.
 *
 * The tables are typed by `ServerMessage["type"]` and `ClientMessage["type"]`,
 * which are inferred from the schemas: a message added to the protocol
 * without an arbitrary here fails `deno task check` (and so the fuzz tests),
 * and a field without an entry in `BAD_FIELD_VALUES` fails the bounds
 * property at run time.
 *
 * @module
 */

import fc from "fast-check";
import type { WireRefusalCode } from "../../lib/util/errors.ts";
import {
  type ClientMessage,
  MAX_FLOW_ID,
  MAX_FREE_RANGES,
  MAX_SERVE_SECONDS,
  MAX_SERVICES,
  NAME_PATTERN,
  type ServerMessage,
} from "../../lib/protocol/protocol.ts";

type ArbitraryPerType<M extends { type: string }> = {
  [K in M["type"]]: fc.Arbitrary<Extract<M, { type: K }>>;
};

// Every refusal code, as an object so that the compiler checks it is complete.
const REFUSAL_CODES: Record<WireRefusalCode, true> = {
  auth_failed: true,
  version_mismatch: true,
  group_live: true,
  app_exists: true,
  port_taken: true,
  port_not_allowed: true,
  no_free_port: true,
  bad_request: true,
  server_closing: true,
  forbidden: true,
  locked_out: true,
  quota: true,
  replica_mismatch: true,
  host_taken: true,
  host_not_allowed: true,
};
const codes = Object.keys(REFUSAL_CODES) as WireRefusalCode[];

const CONTROL = /\p{Cc}/u;

/** `fc.record` with plain objects only, as JSON.parse makes them (never a null prototype). */
const record =
  ((model: Record<string, fc.Arbitrary<unknown>>, constraints: object = {}) =>
    fc.record(model, { ...constraints, noNullPrototype: true })) as typeof fc.record;

// ---- valid field values ----------------------------------------------------

const name = fc.stringMatching(NAME_PATTERN);
const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`));
const port = fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.constantFrom(0, 1, 65535));
const requestId = fc.oneof(fc.nat(1000), fc.maxSafeNat(), fc.constant(Number.MAX_SAFE_INTEGER));
const version = fc.integer({ min: 0, max: 1_000_000 });
/** Up to 1024 UTF-16 code units of anything, control characters and lone surrogates included. */
const text = fc.oneof(
  fc.string({ unit: "binary", maxLength: 64 }),
  fc.string({ unit: "binary", maxLength: 1024 }).filter((s) => s.length <= 1024),
  fc.string({ unit: "binary-ascii", minLength: 1024, maxLength: 1024 }),
);
/** Text without control characters. */
const label = text.map((s) => s.replace(/\p{Cc}/gu, "")).filter((s) => !CONTROL.test(s));
const positive = (max: number) =>
  fc.double({ min: 0, max, noNaN: true, minExcluded: true }).filter((x) => x > 0);
const nonNegative = fc.oneof(fc.nat(), fc.double({ min: 0, max: 1e300, noNaN: true }))
  .map((x) => x + 0); // -0 would come back from JSON as 0
const isoDate = fc.date({
  min: new Date("1970-01-01T00:00:00Z"),
  max: new Date("9999-12-31T23:59:59Z"),
  noInvalidDate: true,
}).map((d) => d.toISOString());

const limits = record({
  maxServeSeconds: positive(MAX_SERVE_SECONDS),
  maxUsers: fc.integer({ min: 1, max: 1e9 }),
  maxConnections: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
}, { requiredKeys: [] });

const service = record({
  group: name,
  app: name,
  port,
  description: label,
  connections: fc.maxSafeNat(),
  bytesIn: nonNegative,
  bytesOut: nonNegative,
  since: isoDate,
  transport: fc.constant("udp" as const),
}, { requiredKeys: ["group", "app", "port", "connections", "bytesIn", "bytesOut", "since"] });

const range = fc.tuple(port, port);

// ---- valid messages ---------------------------------------------------------

/** One arbitrary per server message type. */
export const SERVER_MESSAGES: ArbitraryPerType<ServerMessage> = {
  challenge: record({ type: fc.constant("challenge"), version, server: text, nonce: hex(64) }),
  welcome: record({
    type: fc.constant("welcome"),
    session: hex(32),
    heartbeatTimeout: positive(86_400),
  }),
  exposed: record({ type: fc.constant("exposed"), id: requestId, app: name, port }),
  unexposed: record({ type: fc.constant("unexposed"), id: requestId, app: name, reason: text }, {
    requiredKeys: ["type", "id", "app"],
  }),
  refused: record({
    type: fc.constant("refused"),
    id: requestId,
    code: fc.constantFrom(...codes),
    message: text,
  }, { requiredKeys: ["type", "code", "message"] }),
  ping: record({ type: fc.constant("ping"), seq: requestId }),
  pong: record({ type: fc.constant("pong"), seq: requestId }),
  free_ports: record({
    type: fc.constant("free_ports"),
    id: requestId,
    ranges: fc.oneof(
      fc.array(range, { maxLength: 8 }),
      // Now and then the most ranges an answer may carry.
      fc.constant(null).map(() => Array.from({ length: MAX_FREE_RANGES }, (_, i) => [i, i + 1])),
    ) as fc.Arbitrary<[number, number][]>,
    truncated: fc.boolean(),
  }),
  start: record({
    type: fc.constant("start"),
    id: requestId,
    app: name,
    user: text,
    source: record({ hostname: fc.oneof(fc.ipV4(), fc.ipV6()), port }),
    destination: record({ hostname: fc.oneof(fc.ipV4(), fc.ipV6()), port }),
  }),
  udp_flow: record({
    type: fc.constant("udp_flow"),
    flow: fc.oneof(fc.nat(1000), fc.constantFrom(0, MAX_FLOW_ID)),
    app: name,
    source: record({ hostname: fc.oneof(fc.ipV4(), fc.ipV6()), port }),
    destination: record({ hostname: fc.oneof(fc.ipV4(), fc.ipV6()), port }),
  }),
  services: record({
    type: fc.constant("services"),
    services: fc.array(service, { maxLength: 4 }),
    truncated: fc.boolean(),
  }),
  shutdown: record({ type: fc.constant("shutdown"), reason: text }),
};

/** One arbitrary per client message type. */
export const CLIENT_MESSAGES: ArbitraryPerType<ClientMessage> = {
  hello: record({
    type: fc.constant("hello"),
    version,
    client: text,
    group: name,
    runId: hex(32),
    proof: hex(64),
    shared: fc.boolean(),
  }, { requiredKeys: ["type", "version", "client", "group", "runId", "proof"] }),
  work_hello: record({
    type: fc.constant("work_hello"),
    version,
    session: hex(32),
    proof: hex(64),
  }),
  expose: record({
    type: fc.constant("expose"),
    id: requestId,
    app: name,
    port,
    hint: port,
    description: label,
    limits,
    allowFrom: fc.array(fc.string({ maxLength: 64 }), { minLength: 1, maxLength: 4 }),
    balance: fc.constantFrom("round_robin", "least_conn"),
    udp: record({ idleTimeout: positive(MAX_SERVE_SECONDS) }),
  }, { requiredKeys: ["type", "id", "app", "port"] }),
  unexpose: record({ type: fc.constant("unexpose"), id: requestId, app: name }),
  free_ports: record({ type: fc.constant("free_ports"), id: requestId }),
  query: record({
    type: fc.constant("query"),
    version,
    what: fc.constantFrom("services", "free_ports"),
    group: name,
    proof: hex(64),
  }, { requiredKeys: ["type", "version", "what", "proof"] }),
  ping: record({ type: fc.constant("ping"), seq: requestId }),
  pong: record({ type: fc.constant("pong"), seq: requestId }),
  bye: record({ type: fc.constant("bye") }),
  health: record({
    type: fc.constant("health"),
    app: name,
    healthy: fc.boolean(),
    reason: text,
  }, { requiredKeys: ["type", "app", "healthy"] }),
};

/** Any valid server message. */
export const serverMessage: fc.Arbitrary<ServerMessage> = fc.oneof(
  ...Object.values<fc.Arbitrary<ServerMessage>>(SERVER_MESSAGES),
);
/** Any valid client message. */
export const clientMessage: fc.Arbitrary<ClientMessage> = fc.oneof(
  ...Object.values<fc.Arbitrary<ClientMessage>>(CLIENT_MESSAGES),
);

/** Every type tag of either direction. */
export const ALL_TYPES = [
  ...new Set([...Object.keys(SERVER_MESSAGES), ...Object.keys(CLIENT_MESSAGES)]),
];

// ---- out-of-range values ----------------------------------------------------

/** JSON values that are not strings. */
const notString = fc.oneof(
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 2 }),
  fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }),
);
/** JSON values that are not numbers. */
const notNumber = fc.oneof(
  fc.string(),
  fc.boolean(),
  fc.constant(null),
  fc.constant([1]),
  fc.constant({}),
  fc.integer().map(String),
);

const badName = fc.oneof(
  fc.constant(""),
  fc.constantFrom("-lab", "Lab", "LAB", "lab_2", "lab.2", "läb", " lab", "lab ", "a".repeat(64)),
  fc.stringMatching(/^[a-z0-9][a-z0-9-]{63,100}$/),
  name.filter((s) => /[a-z]/.test(s)).map((s) => s.toUpperCase()),
  fc.string({ unit: "binary" }).filter((s) => !NAME_PATTERN.test(s)),
  notString,
);
const badHex = (n: number) =>
  fc.oneof(
    fc.constantFrom("", "g".repeat(n), "AB".repeat(n / 2), "0".repeat(n - 1), "0".repeat(n + 1)),
    fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`)).map((s) => s.toUpperCase())
      .filter((s) => /[A-F]/.test(s)),
    fc.string().filter((s) => !new RegExp(`^[0-9a-f]{${n}}$`).test(s)),
    notString,
  );
/** Not an integer in [min, max]. */
const badInt = (min: number, max: number) =>
  fc.oneof(
    fc.integer({ min: Number.MIN_SAFE_INTEGER, max: min - 1 }),
    max < Number.MAX_SAFE_INTEGER
      ? fc.integer({ min: max + 1, max: Number.MAX_SAFE_INTEGER })
      : fc.constantFrom(2 ** 53, 2 ** 64, 1e300),
    fc.double({ min, max, noNaN: true }).filter((x) => !Number.isInteger(x)),
    fc.constantFrom(min - 1, max + 1, min + 0.5, 1e308),
    notNumber,
  );
/** Not a number in (0, max]. */
const badPositive = (max: number) =>
  fc.oneof(
    fc.constantFrom(0, -0, -1, max * 2, 1e308),
    fc.double({ max: 0, noNaN: true, noDefaultInfinity: true }),
    fc.double({ min: max, noNaN: true, noDefaultInfinity: true, minExcluded: true }),
    notNumber,
  );
const longText = fc.string({ minLength: 1025, maxLength: 2000, unit: "binary-ascii" });
const badText = fc.oneof(longText, notString);
const badLabel = fc.oneof(
  longText,
  notString,
  fc.tuple(label, fc.integer({ min: 0, max: 0x9f }).filter((c) => c < 0x20 || c >= 0x7f), label)
    .map(([a, c, b]) => (a + String.fromCharCode(c) + b).slice(-1024)),
);
const badLimits = fc.oneof(
  notString.filter((v) => typeof v !== "object" || v === null || Array.isArray(v)),
  record({ maxServeSeconds: badPositive(MAX_SERVE_SECONDS) }),
  record({ maxUsers: badInt(1, 1e9) }),
  record({ maxConnections: badInt(1, Number.MAX_SAFE_INTEGER) }),
);
const badRanges = fc.oneof(
  fc.constantFrom(
    [[1, 70000]],
    [[-1, 5]],
    [[1]],
    [[1, 2, 3]],
    [["1", "2"]],
    [null],
    "1-2",
    {},
  ),
  fc.constant(null).map(() => Array.from({ length: MAX_FREE_RANGES + 1 }, () => [1, 2])),
  fc.tuple(fc.array(range, { maxLength: 3 }), badInt(0, 65535), port)
    .map(([ok, bad, good]) => [...ok, [good, bad]]),
);
const badService = fc.oneof(
  service.map((s) => ({ ...s, group: "Bad_Group" })),
  service.map((s) => ({ ...s, app: "" })),
  service.map((s) => ({ ...s, port: 65536 })),
  service.map((s) => ({ ...s, connections: -1 })),
  service.map((s) => ({ ...s, connections: 1.5 })),
  service.map((s) => ({ ...s, bytesIn: -1 })),
  service.map((s) => ({ ...s, bytesOut: "many" })),
  service.map((s) => ({ ...s, since: "yesterday" })),
  service.map((s) => ({ ...s, description: "tab\there" })),
  service.map(({ since: _, ...s }) => s),
);
const badServices = fc.oneof(
  fc.tuple(fc.array(service, { maxLength: 3 }), badService).map(([ok, bad]) => [...ok, bad]),
  fc.constant(null).map(() =>
    Array.from({ length: MAX_SERVICES + 1 }, (_, i) => ({
      group: "g",
      app: `a${i}`,
      port: 1,
      connections: 0,
      bytesIn: 0,
      bytesOut: 0,
      since: new Date(0).toISOString(),
    }))
  ),
  notString.filter((v) => !Array.isArray(v)),
);
/** A `start`'s `source` or `destination` gone wrong. */
const badNetAddr = fc.oneof(
  notString.filter((v) => typeof v !== "object" || v === null || Array.isArray(v)),
  record({ hostname: fc.ipV4(), port: badInt(0, 65535) }),
  record({ hostname: fc.oneof(notString, fc.constant("h".repeat(65))), port }),
  record({ port }),
);
const badEnum = (values: readonly string[]) =>
  fc.oneof(fc.string().filter((s) => !values.includes(s)), notString);

/**
 * For each bounded field (by name, the same in every message that has it),
 * values the validators must reject. `count` and `heartbeatTimeout` are
 * the `want_work` and `welcome` fields.
 */
export const BAD_FIELD_VALUES: Record<string, fc.Arbitrary<unknown>> = {
  id: badInt(0, Number.MAX_SAFE_INTEGER),
  seq: badInt(0, Number.MAX_SAFE_INTEGER),
  app: badName,
  group: badName,
  port: badInt(0, 65535),
  hint: badInt(0, 65535),
  flow: badInt(0, MAX_FLOW_ID),
  udp: fc.oneof(
    notString.filter((v) => typeof v !== "object" || v === null || Array.isArray(v)),
    fc.constant({}),
    record({ idleTimeout: badPositive(MAX_SERVE_SECONDS) }),
  ),
  version: badInt(0, 1_000_000),
  count: badInt(1, 1024),
  nonce: badHex(64),
  proof: badHex(64),
  session: badHex(32),
  runId: badHex(32),
  heartbeatTimeout: badPositive(86_400),
  server: badText,
  client: badText,
  user: badText,
  message: badText,
  reason: badText,
  description: badLabel,
  limits: badLimits,
  code: badEnum(codes),
  what: badEnum(["services", "free_ports"]),
  truncated: fc.oneof(fc.constantFrom(0, 1, "true", "false", null, [], {}), fc.string()),
  shared: fc.oneof(fc.constantFrom(0, 1, "true", "false", null, [], {}), fc.string()),
  healthy: fc.oneof(fc.constantFrom(0, 1, "true", "false", null, [], {}), fc.string()),
  balance: badEnum(["round_robin", "least_conn"]),
  ranges: badRanges,
  source: badNetAddr,
  destination: badNetAddr,
  services: badServices,
  allowFrom: fc.oneof(
    fc.constantFrom([], "10.0.0.0/8", null, {}, [1], [null]),
    fc.constant(Array.from({ length: 257 }, () => "10.0.0.0/8")),
    fc.string({ minLength: 65, maxLength: 100 }).map((s) => [s]),
  ),
};
