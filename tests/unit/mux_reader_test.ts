/**
 * The mux session's read loop (lib/transport/mux/reader.ts): a connection
 * that hands out its own chunks (`ChunkReader`, as the `node:tls` server
 * socket does) is decoded in place, and frames come out the same as through
 * `read()` into the loop's buffer, however the chunks cut the frames
 * (headers, OPEN headers and datagrams split across chunks, chunks larger
 * than the buffer), with the first bytes of a `PrefixedConn` before them.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { FrameDecoder, type FrameHandler } from "../../lib/transport/mux/decoder.ts";
import { readFrames } from "../../lib/transport/mux/reader.ts";
import { PrefixedConn } from "../../lib/transport/mux/prefixed.ts";
import {
  DATA,
  DATAGRAM,
  FLAG_FIN,
  MAX_DATAGRAM,
  OPEN,
  PING,
  preamble,
  WINDOW,
} from "../../lib/transport/mux/frame.ts";
import { FRAME_ROOM } from "../../lib/transport/mux/options.ts";
import { fuzz } from "../helpers/fuzz.ts";
import { concat, frame } from "../helpers/mux_frames.ts";

/** Frame events as short strings; DATA bytes summed into a checksum per frame. */
class Recorder implements FrameHandler {
  events: string[] = [];
  #sum = 0;
  #count = 0;
  onPreamble(version: number) {
    this.events.push(`preamble ${version}`);
  }
  onDataStart(id: number, length: number, fin: boolean) {
    this.events.push(`data ${id} ${length} ${fin}`);
    this.#sum = this.#count = 0;
  }
  onDataChunk(buf: Uint8Array, off: number, length: number) {
    for (let i = off; i < off + length; i++) this.#sum = (this.#sum * 31 + buf[i]!) >>> 0;
    this.#count += length;
  }
  onDataEnd() {
    this.events.push(`bytes ${this.#count} ${this.#sum}`);
  }
  onOpen(id: number, header: Uint8Array) {
    this.events.push(`open ${id} ${header.length} ${header[0]} ${header.at(-1)}`);
  }
  onWindow(id: number, increment: number) {
    this.events.push(`window ${id} ${increment}`);
  }
  onReset(id: number, refused: boolean, reason: string) {
    this.events.push(`reset ${id} ${refused} ${reason}`);
  }
  onPing(ack: boolean, opaque: number) {
    this.events.push(`ping ${ack} ${opaque}`);
  }
  onGoAway(lastId: number, reason: string) {
    this.events.push(`goaway ${lastId} ${reason}`);
  }
  onDatagram(flowId: number, payload: Uint8Array) {
    this.events.push(`datagram ${flowId} ${payload.length} ${payload[0]} ${payload.at(-1)}`);
  }
}

const filled = (n: number, seed: number) =>
  Uint8Array.from({ length: n }, (_, i) => (i * seed) & 255);

/** A session's worth of frames: small and large, with the largest non-DATA frames. */
const STREAM = concat([
  preamble(),
  frame(OPEN, 0, 1, 3000, filled(3000, 7)),
  frame(DATA, 0, 1, 200_000, filled(200_000, 13)),
  frame(WINDOW, 0, 1, 65536),
  frame(DATAGRAM, 0, 9, MAX_DATAGRAM, filled(MAX_DATAGRAM, 3)),
  frame(PING, 0, 0, 42),
  frame(DATA, FLAG_FIN, 1, 5, filled(5, 5)),
  frame(DATAGRAM, 0, 9, 1, filled(1, 1)),
  frame(DATA, 0, 3, 70_000, filled(70_000, 11)),
]);

/** The bytes cut at `cuts`, each piece a fresh chunk. */
function pieces(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.filter((c) => c > 0 && c < bytes.length))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    out.push(bytes.slice(prev, c));
    prev = c;
  }
  return out;
}

/** A connection that hands out `chunks` one by one (and reads them too). */
function chunkConn(chunks: Uint8Array[]) {
  let i = 0;
  return {
    readChunk: () => Promise.resolve(i < chunks.length ? chunks[i++]! : null),
    read: (_p: Uint8Array): Promise<number | null> => {
      throw new Error("read() called on a chunk reader");
    },
    write: (p: Uint8Array) => Promise.resolve(p.length),
    close: () => {},
  };
}

/** A connection whose reads return at most each piece (copied into the caller's buffer). */
function readConn(chunks: Uint8Array[]) {
  let i = 0;
  let off = 0;
  return {
    read: (p: Uint8Array): Promise<number | null> => {
      if (i >= chunks.length) return Promise.resolve(null);
      const c = chunks[i]!;
      const n = Math.min(p.length, c.length - off);
      p.set(c.subarray(off, off + n));
      off += n;
      if (off === c.length) {
        i++;
        off = 0;
      }
      return Promise.resolve(n);
    },
  };
}

async function decode(conn: Parameters<typeof readFrames>[0], size: number): Promise<string[]> {
  const rec = new Recorder();
  const decoder = new FrameDecoder(rec);
  const ended = await readFrames(conn, decoder, size, () => true, () => {});
  assert.equal(ended, true);
  assert.equal(decoder.unfinished(), null);
  return rec.events;
}

const SIZE = 2 * FRAME_ROOM;

Deno.test("mux reader: chunks are decoded in place, the same as reads, however they are cut", async () => {
  const expected = await decode(readConn([STREAM]), SIZE);
  assert.equal(expected.length, 12);
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 0, max: STREAM.length }), { maxLength: 40 }),
      async (cuts) => {
        const chunks = pieces(STREAM, cuts);
        assert.deepEqual(await decode(chunkConn(chunks), SIZE), expected);
        assert.deepEqual(await decode(readConn(chunks), SIZE), expected);
      },
    ),
    fuzz(200),
  );
});

Deno.test("mux reader: every header and small frame split across chunks, one byte at a time", async () => {
  const expected = await decode(readConn([STREAM]), SIZE);
  // Cut at every byte of the first 4000 (preamble, OPEN) and around the datagram.
  const cuts = Array.from({ length: 4000 }, (_, i) => i);
  const datagramAt = 5 + 10 + 3000 + 10 + 200_000 + 10;
  for (let i = datagramAt - 20; i < datagramAt + 40; i++) cuts.push(i);
  assert.deepEqual(await decode(chunkConn(pieces(STREAM, cuts)), SIZE), expected);
});

Deno.test("mux reader: a PrefixedConn reads its first bytes, then the connection's chunks", async () => {
  const expected = await decode(readConn([STREAM]), SIZE);
  const first = STREAM.slice(0, 1234);
  const conn = new PrefixedConn(chunkConn(pieces(STREAM.subarray(1234), [5000, 90_000])), first);
  assert.equal(typeof conn.readChunk, "function");
  assert.deepEqual(await decode(conn, SIZE), expected);
  // Over a connection without chunks it has none either, and reads as before.
  const plain = new PrefixedConn({ ...readConn([STREAM.subarray(1234)]), ...noWrite }, first);
  assert.equal(plain.readChunk, undefined);
  assert.deepEqual(await decode(plain, SIZE), expected);
});

const noWrite = { write: (p: Uint8Array) => Promise.resolve(p.length), close: () => {} };
