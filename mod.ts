/**
 * burrow: NAT traversal as a library. A server on a public host exposes the
 * apps of clients behind NAT on its public ports; this module runs either
 * end inside a Deno program.
 *
 * {@linkcode startServer} and {@linkcode startClient} run the two ends;
 * {@linkcode discoverServices} and {@linkcode discoverFreePorts} ask a server
 * what it offers; {@linkcode ServerHooks} let the host program allow or refuse
 * clients, apps and users; `startServer({ dashboard })` serves a dashboard, a
 * JSON API and Prometheus `/metrics`, and `startClient({ admin })` the
 * client's own `GET /api/status`. Expected failures are typed: {@linkcode ConfigError},
 * {@linkcode ProtocolError} and {@linkcode RefusedError}.
 *
 * @example
 * ```ts
 * import { startClient, startServer } from "@burrow/burrow";
 * const server = await startServer({
 *   bind: "127.0.0.1:0",
 *   token: "s3cret",
 *   ports: "20000-20100",
 *   publicHost: "127.0.0.1",
 * });
 * const client = await startClient({
 *   server: `127.0.0.1:${server.addr.port}`,
 *   token: "s3cret",
 *   group: "lab",
 * });
 * const tunnel = await client.expose({ name: "web", local: "127.0.0.1:8080" });
 * console.log(`http://127.0.0.1:${tunnel.remotePort}/`);
 * await client.close();
 * await server.close();
 * ```
 *
 * @module
 */

export {
  type BurrowServer,
  type ServerOptions,
  type ServiceInfo,
  startServer,
} from "./lib/server/server.ts";
export type { ClusterInfo, ClusterOptions } from "./lib/server/api.ts";
export {
  type BurrowClient,
  type ClientEventDetail,
  type ClientOptions,
  type ExposeOptions,
  startClient,
  type Tunnel,
  type TunnelLimits,
} from "./lib/client/client.ts";
export {
  ConfigError,
  ProtocolError,
  REFUSAL_CODES,
  type RefusalCode,
  RefusedError,
  type WireRefusalCode,
} from "./lib/util/errors.ts";
export { Secret } from "./lib/util/secret.ts";
export type { HostPort } from "./lib/util/addr.ts";
export {
  type Discovered,
  discoverFreePorts,
  discoverServices,
  type DiscoveryOptions,
} from "./lib/client/discovery.ts";
export type {
  AuthInfo,
  CloseInfo,
  ExposeInfo,
  HookDecision,
  ServerHooks,
  UserConnectInfo,
} from "./lib/server/hooks.ts";
export type { DashboardOptions } from "./lib/dashboard/http.ts";
export type {
  AppStatus,
  GroupStatus,
  ReplicaStatus,
  ServerStatus,
} from "./lib/dashboard/monitor.ts";
export type { ClusterStatus, WebHostStatus } from "./lib/dashboard/status_types.ts";
export type { HealthOptions } from "./lib/config/health.ts";
export type { BalancePolicy } from "./lib/protocol/protocol.ts";
export type { TrafficSeries } from "./lib/tunnel/traffic.ts";
export type { ServerEvent, ServerEventKind } from "./lib/dashboard/events.ts";
export type { ExpositionFormat } from "./lib/dashboard/metrics.ts";
export type { ClientAppStatus, ClientStatus, LinkState } from "./lib/client/status.ts";
export { PROTOCOL_VERSION } from "./lib/protocol/version.ts";
export { VERSION } from "./lib/util/version.ts";
export type { UserSpec } from "./lib/server/users.ts";
export { DEFAULT_LIMITS, type ServerLimits } from "./lib/config/limits.ts";
export type { ProxyProtocolVersion } from "./lib/tunnel/proxy_protocol.ts";
export type { WebOptions } from "./lib/server/api.ts";
export type { WebExposeOptions } from "./lib/client/api.ts";
export { ProxyError, type ProxyFailure } from "./lib/transport/proxy_dial.ts";
