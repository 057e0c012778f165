/**
 * What a public app is given: the server's services (`AppServices`), and
 * the users it serves (`UserConn`: a TCP connection, or a stream relayed
 * by another cluster node).
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import type { ServerLimits } from "../config/limits.ts";
import type { RareLog } from "../util/rare_log.ts";
import type { BufferPool, Duplex } from "../tunnel/join.ts";
import type { ServerMonitor } from "../dashboard/monitor.ts";
import type { ServerHooks } from "./hooks.ts";
import type { PendingUsers } from "./work_conn.ts";

/** What an app needs from the server around it. */
export interface AppServices {
  log: Logger;
  rare: RareLog;
  hooks: Pick<ServerHooks, "onUserConnect" | "onClose">;
  monitor: Pick<ServerMonitor, "userTurnedAway" | "workWaited" | "replicaHealth">;
  limits: Pick<ServerLimits, "maxPendingUsers">;
  pending: PendingUsers;
  buffers: BufferPool;
}

/** A user: a TCP connection (Deno.TcpConn fits), or a stream relayed by another cluster node. */
export interface UserConn extends Duplex {
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;
  setNoDelay(on?: boolean): void;
}
