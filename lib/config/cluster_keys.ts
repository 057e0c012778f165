/**
 * The server's cluster keys (CONTRACT "Cluster"): `cluster.store`,
 * `cluster.node`, `cluster.relay`, `cluster.advertise` and `cluster.secret`
 * (env `BURROW_CLUSTER_SECRET`), with the flags `--cluster`, `--node`,
 * `--relay` and `--advertise` overriding them key by key.
 *
 * @module
 */

import { z } from "zod";
import type { HostPort } from "../util/addr.ts";
import { ConfigError } from "../util/errors.ts";
import { Secret } from "../util/secret.ts";
import { checkFlag, hostPort, hostPortField } from "./fields.ts";

/** The cluster settings, validated. */
export interface ClusterConfig {
  /** The store URL, with credentials: hand it only to the store client. */
  store: string;
  /** This node's name; undefined: the default (host name plus a random suffix). */
  node?: string;
  /** Where this node accepts relay links. */
  relay: HostPort;
  /** What other nodes dial; undefined: the relay address. */
  advertise?: HostPort;
  /** Proves this node to the others. */
  secret: Secret;
}

/** The cluster flags. */
export interface ClusterFlags {
  cluster?: string;
  node?: string;
  relay?: string;
  advertise?: string;
}

/** A node name: letters, digits, dot, dash, underscore. */
export const nodeNameField = z.string("must be a node name").regex(
  /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/,
  "must be 1-63 letters, digits, dots, dashes or underscores",
);

/** The full check (host, database number) is the store's own, when the server starts. */
const storeField = z.string("must be a redis:// URL").regex(
  /^rediss?:\/\/[^/\s]+/,
  "must be redis://[user:pass@]host:port[/db] or rediss://",
);

/** The `cluster` key of a server file. */
export const clusterFileShape = {
  cluster: z.strictObject({
    store: storeField.optional(),
    node: nodeNameField.optional(),
    relay: hostPortField.optional(),
    advertise: hostPortField.optional(),
    secret: z.string("must be text").min(16, "must be at least 16 characters").optional(),
  }, "must be a map with store, node, relay, advertise and secret").optional(),
};

type ClusterFile = z.infer<typeof clusterFileShape.cluster>;

/** The cluster settings from flags over the file's keys; undefined when no store is given. */
export function clusterConfig(
  flags: ClusterFlags,
  file: ClusterFile,
  getEnv: (name: string) => string | undefined,
  fault: (message: string) => ConfigError = (message) => new ConfigError(message),
): ClusterConfig | undefined {
  const store = flags.cluster !== undefined
    ? checkFlag("cluster", storeField, flags.cluster)
    : file?.store;
  const node = flags.node !== undefined ? checkFlag("node", nodeNameField, flags.node) : file?.node;
  const relay = flags.relay !== undefined
    ? checkFlag("relay", hostPortField, flags.relay)
    : file?.relay;
  const advertise = flags.advertise !== undefined
    ? checkFlag("advertise", hostPortField, flags.advertise)
    : file?.advertise;
  if (store === undefined) {
    if (node !== undefined || relay !== undefined || advertise !== undefined) {
      throw fault(
        "--node, --relay and --advertise (cluster.node, .relay, .advertise) need --cluster URL (cluster.store)",
      );
    }
    return undefined;
  }
  const secret = file?.secret ?? envSecret(getEnv);
  if (secret === undefined) {
    throw fault(
      "cluster.secret: required with --cluster: set BURROW_CLUSTER_SECRET or the cluster.secret key (the same on every node)",
    );
  }
  if (secret.length < 16) {
    throw fault("BURROW_CLUSTER_SECRET: must be at least 16 characters");
  }
  if (relay === undefined) {
    throw fault("--relay HOST:PORT (cluster.relay): required with --cluster");
  }
  const config: ClusterConfig = { store, relay: hostPort(relay), secret: new Secret(secret) };
  if (node !== undefined) config.node = node;
  if (advertise !== undefined) config.advertise = hostPort(advertise);
  return config;
}

function envSecret(getEnv: (name: string) => string | undefined): string | undefined {
  try {
    return getEnv("BURROW_CLUSTER_SECRET") || undefined;
  } catch {
    return undefined;
  }
}
