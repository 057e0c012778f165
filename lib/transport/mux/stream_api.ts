/**
 * The stream as callers of a mux session see it (`stream.ts` implements it).
 *
 * @module
 */

/**
 * A stream as callers see it: the `Duplex` shape of `lib/tunnel/join.ts` (Deno's
 * TcpConn has it too) plus its id, the opener's header and `reset`.
 */
export interface MuxStream {
  /** Odd if the client side opened it, even if the server side did. */
  readonly id: number;
  /** The opaque header the opener sent with it (empty if none). */
  readonly header: Uint8Array;
  /** Reads into `p`; resolves with the count, or null once the peer has half-closed. */
  read(p: Uint8Array): Promise<number | null>;
  /**
   * Bytes received and waiting, as a view into the stream's buffer (no
   * copy), or null if none; they stay queued until `skipQueued(n)`.
   */
  peekQueued(): Uint8Array | null;
  /** Drops the first `n` bytes `peekQueued` showed. */
  skipQueued(n: number): void;
  /** Queues `p`; resolves with `p.length` once every byte is framed (then `p` may be reused). */
  write(p: Uint8Array): Promise<number>;
  /**
   * Like `write` for `frame[MUX_HEADROOM..]`, the payload; the first
   * `MUX_HEADROOM` bytes are scratch space the stream may overwrite with a
   * frame header, so that a large payload leaves in one system call without
   * being copied. Resolves with the payload's length. A relay that reads
   * into `buf.subarray(MUX_HEADROOM)` gets this for free.
   */
  writeWithHeadroom(frame: Uint8Array): Promise<number>;
  /** Half-closes: the peer reads end of stream after the bytes already written. */
  closeWrite(): Promise<void>;
  /**
   * Releases the stream. If the peer has finished sending, bytes still being
   * written go out, then a FIN; otherwise the stream is reset, as TCP resets
   * a connection closed with data still arriving.
   */
  close(): void;
  /** Aborts both directions at once; the peer's pending and later calls reject. */
  reset(reason?: string): void;
}

/** A write queued on a stream, until every byte is framed. */
export interface PendingWrite {
  buf: Uint8Array;
  /** Where the payload starts: 0, or HEADER_SIZE for a write with headroom. */
  start: number;
  off: number;
  resolve: (n: number) => void;
  reject: (err: unknown) => void;
}
