/**
 * Raw sockets at the edge: a last answer written to a socket no HTTP
 * library answers on any more (a refused upgrade, a parse error), and two
 * sockets joined both ways after an upgrade.
 *
 * @module
 */

import type { Duplex as NodeDuplex } from "node:stream";

/**
 * Sends a last answer and half-closes; a peer that keeps its side open is
 * cut off two seconds later (so the answer is read before the close).
 */
export function endRaw(socket: NodeDuplex, text: string): void {
  if (socket.writable) socket.end(text);
  else return void socket.destroy();
  const timer = setTimeout(() => socket.destroy(), 2000);
  Deno.unrefTimer(timer);
  socket.once("close", () => clearTimeout(timer));
}

/**
 * Joins two raw sockets both ways. The end of one direction is passed on as
 * an end (half-close) of the other; either failing destroys both, and one
 * closing ends the other once its writes are flushed.
 */
export function pipeBoth(a: NodeDuplex, b: NodeDuplex): void {
  const destroyBoth = () => {
    a.destroy();
    b.destroy();
  };
  a.on("error", destroyBoth);
  b.on("error", destroyBoth);
  a.on("close", () => b.end());
  b.on("close", () => a.end());
  a.pipe(b);
  b.pipe(a);
}
