/**
 * What a server session is given: the services of the server around it
 * (`SessionServices`) and its control connection (`ControlLink`).
 *
 * @module
 */

import type { Conn } from "../transport/transport.ts";
import type { FrameReader, FrameWriter, ServerMessage } from "../protocol/protocol.ts";
import type { ServerHooks } from "./hooks.ts";
import type { ServerMonitor } from "../dashboard/monitor.ts";
import type { ServerLimits } from "../config/limits.ts";
import type { Registry } from "./registry.ts";
import type { AppServices } from "./public_app.ts";
import type { WebService } from "../http/service.ts";
import type { UdpAppServices } from "./udp_apps.ts";
import type { ClusterNode } from "./cluster/node.ts";

/** What a session needs from the server that runs it (`S`: the session type the registry holds). */
export interface SessionServicesOf<S> extends AppServices {
  registry: Registry<S>;
  publicHost: string;
  heartbeatTimeoutMs: number;
  hooks: Pick<ServerHooks, "onExpose" | "onUserConnect" | "onClose">;
  monitor:
    & AppServices["monitor"]
    & Pick<ServerMonitor, "refused" | "groupOffline" | "appExposed" | "appClosed" | "udpCounter">;
  limits: Pick<ServerLimits, "maxAppsPerGroup" | "maxPendingUsers"> & UdpAppServices["limits"];
  /** The shared web listeners, when the server has any (`--http`, `--https`). */
  web?: WebService;
  /** The cluster this server is a node of: ports are claimed cluster-wide. */
  cluster?: ClusterNode;
}

/** The session's control connection. */
export interface ControlLink {
  conn: Conn;
  reader: FrameReader;
  writer: FrameWriter<ServerMessage>;
}
