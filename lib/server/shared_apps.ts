/**
 * Small decisions of a session about its `expose` requests: the request id
 * of a malformed one (so a refusal can answer it), and whether an app may
 * join the replicas of a shared group's app of the same name.
 *
 * @module
 */

import type { Expose, Refused } from "../protocol/protocol.ts";
import type { PublicApp } from "./public_app.ts";
import type { Registry } from "./registry.ts";

/** The request id of a frame that claims to be an `expose` (so a refusal can answer it). */
export function exposeId(raw: unknown): number | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  const { type, id } = raw as { type?: unknown; id?: unknown };
  const usable = type === "expose" && typeof id === "number" && Number.isSafeInteger(id) && id >= 0;
  return usable ? id : undefined;
}

/** The refusal that answers a malformed `expose` on its own, or undefined if it has no usable id. */
export function badExpose(raw: unknown): Refused | undefined {
  const id = exposeId(raw);
  if (id === undefined) return undefined;
  return { type: "refused", id, code: "bad_request", message: "malformed expose request" };
}

/** Why an `expose` cannot join the replicas of `app` (they must agree on its port), or undefined. */
export function replicaMismatch(app: PublicApp, msg: Expose): string | undefined {
  if (app.requestedPort === msg.port) return undefined;
  const want = (port: number) => port === 0 ? "any port (remote_port 0)" : `remote_port ${port}`;
  return `app ${app.entry.group}/${app.entry.app} is served by other replicas with ` +
    `${want(app.requestedPort)}, this one asks for ${want(msg.port)}: ` +
    `give every replica the same type and remote_port`;
}

/** The app of that name another member of `self`'s shared group serves, if any. */
export function siblingApp<S extends { group: string; apps: Map<string, PublicApp> }>(
  registry: Registry<S>,
  self: S,
  name: string,
): PublicApp | undefined {
  for (const member of registry.group(self.group)?.members ?? []) {
    const app = member === self ? undefined : member.apps.get(name);
    if (app) return app;
  }
  return undefined;
}

/** What a member of a shared group serves, for {@linkcode replicaTypeMismatch}. */
interface Member {
  group: string;
  apps: Map<string, unknown>;
  webApps: Map<string, unknown>;
}

/**
 * Why `msg` cannot join the app of its name in `self`'s shared group because
 * another member serves it as the other kind (a port against web names), or
 * undefined. Replicas must agree on an app's type.
 */
export function replicaTypeMismatch<S extends Member>(
  members: Iterable<S>,
  self: S,
  msg: Expose,
): string | undefined {
  const wantsWeb = msg.web !== undefined;
  for (const member of members) {
    if (member === self) continue;
    const other = member.apps.has(msg.app) ? "tcp" : member.webApps.has(msg.app) ? "web" : "";
    if (other === "" || (other === "web") === wantsWeb) continue;
    return `app ${self.group}/${msg.app} is served by other replicas as a ${
      other === "tcp" ? "tcp app on a port" : "web app by name"
    }, this one asks for ${wantsWeb ? `type ${msg.web?.type}` : "a port (type tcp)"}: ` +
      `give every replica the same type and remote_port`;
  }
  return undefined;
}
