/**
 * A relayed user's stream as an app serves it: the mux stream's bytes, with
 * the user's own address (from the stream's header) as its remote address,
 * so `allow_from`, hooks and the work stream's `start` see the real user.
 *
 * @module
 */

import type { MuxStream } from "../../transport/mux/mod.ts";
import type { UserConn } from "../public_app.ts";
import type { RelayedUser } from "./relay_auth.ts";

/** A {@linkcode UserConn} over a relay stream. */
export class RelayedConn implements UserConn {
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;
  #stream: MuxStream;

  constructor(stream: MuxStream, user: RelayedUser) {
    this.#stream = stream;
    this.remoteAddr = { transport: "tcp", ...user.from };
    this.localAddr = { transport: "tcp", ...user.to };
  }

  read(p: Uint8Array): Promise<number | null> {
    return this.#stream.read(p);
  }

  write(p: Uint8Array): Promise<number> {
    return this.#stream.write(p);
  }

  writeWithHeadroom(frame: Uint8Array): Promise<number> {
    return this.#stream.writeWithHeadroom(frame);
  }

  closeWrite(): Promise<void> {
    return this.#stream.closeWrite();
  }

  close(): void {
    this.#stream.close();
  }

  /** Aborts both ways, as a reset of the user's connection. */
  reset(): void {
    this.#stream.reset();
  }

  setNoDelay(): void {}
}
