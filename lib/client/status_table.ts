/**
 * The short table of apps a client prints on stderr (when it is a terminal)
 * at start and after each reconnect: name, local address, public address
 * and state.
 *
 * @module
 */

import type { ClientStatus } from "./status.ts";

/** Lays rows out in columns under a header, two spaces apart. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)).join("  ");
  return [line(header), ...rows.map(line)].join("\n");
}

/** The client's apps as a table, under one line naming the group and the server link. */
export function formatStatusTable(status: ClientStatus): string {
  const rows = status.apps.map((a) => [a.name, a.local, a.publicAddr ?? "-", a.state]);
  const title = `${status.group} via ${status.server.addr} (${status.server.state})`;
  return `${title}\n${formatTable(["APP", "LOCAL", "PUBLIC", "STATE"], rows)}`;
}

/**
 * Writes the table once a burst of `ready` events has settled (`delayMs`
 * after the last one): at start, and again after each reconnect. Returns a
 * function that stops it.
 */
export function printStatusOnReady(
  client: EventTarget & { status(): ClientStatus },
  write: (text: string) => void,
  delayMs = 300,
): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onReady = () => {
    clearTimeout(timer);
    timer = setTimeout(() => write(formatStatusTable(client.status())), delayMs);
  };
  const stop = () => {
    clearTimeout(timer);
    client.removeEventListener("ready", onReady);
  };
  client.addEventListener("ready", onReady);
  client.addEventListener("closed", stop, { once: true });
  return stop;
}
