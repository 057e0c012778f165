/**
 * Which CA the ACME client trusts for a directory's own TLS (`acme.ca`, for
 * a private ACME server such as Pebble or step-ca).
 *
 * `acme-client` sends every request through one shared axios instance, so
 * trust cannot be given per client object. Instead one request interceptor
 * picks an agent by the request's origin: directories registered here get
 * an agent that trusts the public roots plus their CA; every other origin
 * keeps the default. Two servers in one process with different private ACME
 * servers therefore each trust only their own.
 *
 * @module
 */

import https from "node:https";
import tls from "node:tls";
import "./env_guard.ts"; // before acme-client: see there
import * as acme from "acme-client";

const agents = new Map<string, https.Agent>();
let installed = false;

/**
 * Trusts `caPem` (besides the public roots) for requests to the origin of
 * `directoryUrl`.
 */
export function trustForDirectory(directoryUrl: string, caPem: string): void {
  const origin = new URL(directoryUrl).origin;
  agents.set(origin, new https.Agent({ ca: [...tls.rootCertificates, caPem], keepAlive: true }));
  if (installed) return;
  installed = true;
  acme.axios.interceptors.request.use((config) => {
    if (config.url !== undefined && config.httpsAgent === undefined) {
      const agent = agents.get(new URL(config.url, config.baseURL).origin);
      if (agent) config.httpsAgent = agent;
    }
    return config;
  });
}

/** Forgets the trust given for the origin of `directoryUrl`. */
export function forgetDirectory(directoryUrl: string): void {
  const origin = new URL(directoryUrl).origin;
  agents.get(origin)?.destroy();
  agents.delete(origin);
}
