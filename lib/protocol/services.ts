/**
 * What discovery reports about an exposed app: the shape that the server's
 * `services()` returns and that a `services` answer carries on the wire.
 *
 * @module
 */

/** One exposed app, as the registry knows it. */
export interface AppEntry {
  group: string;
  app: string;
  port: number;
  since: Date;
  /** Free text from the app's config, shown by discovery. */
  description?: string;
  /** `udp` when `port` is a UDP port (a udp app); absent: a TCP port. */
  transport?: "udp";
}

/** One exposed app, as `services()` reports it. */
export interface ServiceInfo {
  /** The group that exposes the app. */
  group: string;
  /** The app's name within its group. */
  app: string;
  /** The public port it is served on. */
  port: number;
  /** User connections open now. */
  connections: number;
  /** Bytes from users to the app. */
  bytesIn: number;
  /** Bytes from the app to users. */
  bytesOut: number;
  /** When the app went live. */
  since: Date;
  /** Free text from the app's config, if it has one. */
  description?: string;
  /** `udp` for a udp app (`port` is a UDP port); absent for a tcp app. */
  transport?: "udp";
}
