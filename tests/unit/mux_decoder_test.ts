/**
 * The mux frame decoder (lib/transport/mux/decoder.ts): frames decode the
 * same however the bytes are split, every malformed header is refused with a
 * `MuxProtocolError` that names the problem, and random bytes never make it
 * throw anything else.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { FrameDecoder, type FrameHandler } from "../../lib/transport/mux/decoder.ts";
import { MuxProtocolError } from "../../lib/transport/mux/errors.ts";
import {
  DATA,
  DATAGRAM,
  FLAG_ACK,
  FLAG_FIN,
  GOAWAY,
  MAX_DATA_PAYLOAD,
  MAX_DATAGRAM,
  OPEN,
  PING,
  preamble,
  RESET,
  RESET_REFUSED,
  WINDOW,
} from "../../lib/transport/mux/frame.ts";
import { fuzz } from "../helpers/fuzz.ts";
import { concat, frame } from "../helpers/mux_frames.ts";

/** A handler that records every event as a string (DATA pieces joined per frame). */
class Recorder implements FrameHandler {
  events: string[] = [];
  #data: number[] = [];
  onPreamble(version: number) {
    this.events.push(`preamble ${version}`);
  }
  onDataStart(id: number, length: number, fin: boolean) {
    this.events.push(`data ${id} ${length} ${fin}`);
    this.#data = [];
  }
  onDataChunk(buf: Uint8Array, off: number, length: number) {
    this.#data.push(...buf.subarray(off, off + length));
  }
  onDataEnd() {
    this.events.push(`bytes ${this.#data.join(",")}`);
  }
  onOpen(id: number, header: Uint8Array) {
    this.events.push(`open ${id} ${[...header].join(",")}`);
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
    this.events.push(`datagram ${flowId} ${[...payload].join(",")}`);
  }
}

/** Feeds `bytes` cut at `cuts` (offsets), as a connection's reads would. */
function decodeIn(bytes: Uint8Array, cuts: number[]): string[] {
  const rec = new Recorder();
  const decoder = new FrameDecoder(rec);
  const buf = new Uint8Array(bytes.length);
  let start = 0;
  let end = 0;
  for (
    const cut of [
      ...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b),
      bytes.length,
    ]
  ) {
    buf.set(bytes.subarray(end, cut), end);
    end = cut;
    start = decoder.feed(buf, start, end);
  }
  assert.equal(start, end, "every byte consumed");
  assert.equal(decoder.unfinished(), null);
  return rec.events;
}

const encoder = new TextEncoder();
const sample = concat([
  preamble(),
  frame(OPEN, 0, 1, 3, new Uint8Array([7, 8, 9])),
  frame(DATA, 0, 1, 5, new Uint8Array([1, 2, 3, 4, 5])),
  frame(DATA, FLAG_FIN, 1, 0),
  frame(WINDOW, 0, 0, 65536),
  frame(PING, 0, 0, 42),
  frame(PING, FLAG_ACK, 0, 43),
  frame(RESET, 0, 3, 3, new Uint8Array([RESET_REFUSED, 0x68, 0x69])),
  frame(DATAGRAM, 0, 9, 2, new Uint8Array([0xaa, 0xbb])),
  frame(GOAWAY, 0, 5, 3, encoder.encode("bye")),
]);
const expected = [
  "preamble 1",
  "open 1 7,8,9",
  "data 1 5 false",
  "bytes 1,2,3,4,5",
  "data 1 0 true",
  "bytes ",
  "window 0 65536",
  "ping false 42",
  "ping true 43",
  "reset 3 true hi",
  "datagram 9 170,187",
  "goaway 5 bye",
];

Deno.test("mux decoder: every frame type decodes, in one read or one byte at a time", () => {
  assert.deepEqual(decodeIn(sample, []), expected);
  assert.deepEqual(decodeIn(sample, Array.from({ length: sample.length }, (_, i) => i)), expected);
});

Deno.test("mux decoder: any split of the bytes decodes the same", () => {
  fc.assert(
    fc.property(fc.array(fc.nat(sample.length), { maxLength: 20 }), (cuts) => {
      assert.deepEqual(decodeIn(sample, cuts), expected);
    }),
    fuzz(300),
  );
});

Deno.test("mux decoder: a connection that ends mid-frame is reported where", () => {
  const decoder = new FrameDecoder(new Recorder());
  assert.equal(decoder.unfinished(), "before the peer's mux preamble");
  const bytes = concat([preamble(), frame(DATA, 0, 5, 100)]);
  decoder.feed(bytes, 0, bytes.length);
  assert.equal(decoder.unfinished(), "inside a DATA frame for stream 5");
});

const hostile: Array<[string, Uint8Array, RegExp]> = [
  ["unknown type", frame(9, 0, 1, 0), /unknown mux frame type 9/],
  ["unknown flags", frame(DATA, 0x80, 1, 0), /DATA frame with unknown flags 0x80/],
  ["FIN on OPEN", frame(OPEN, FLAG_FIN, 1, 0), /OPEN frame with unknown flags/],
  [
    "oversize DATA",
    frame(DATA, 0, 1, MAX_DATA_PAYLOAD + 1),
    /carries 262145 bytes \(at most 262144/,
  ],
  [
    "oversize datagram",
    frame(DATAGRAM, 0, 1, MAX_DATAGRAM + 1),
    /DATAGRAM frame for stream 1 carries/,
  ],
  ["DATA for stream 0", frame(DATA, 0, 0, 1), /DATA frame for stream 0/],
  ["OPEN for stream 0", frame(OPEN, 0, 0, 0), /OPEN frame for stream 0/],
  ["PING with an id", frame(PING, 0, 3, 0), /PING frame with stream id 3/],
  ["empty WINDOW", frame(WINDOW, 0, 1, 0), /grants 0 bytes/],
  ["RESET without code", frame(RESET, 0, 1, 0), /without its code byte/],
  ["RESET with unknown code", frame(RESET, 0, 1, 1, new Uint8Array([7])), /unknown code 7/],
];

for (const [what, bytes, message] of hostile) {
  Deno.test(`mux decoder: refuses ${what}`, () => {
    const decoder = new FrameDecoder(new Recorder());
    const all = concat([preamble(), bytes]);
    assert.throws(
      () => decoder.feed(all, 0, all.length),
      (e) => e instanceof MuxProtocolError && message.test(e.message),
    );
  });
}

Deno.test("mux decoder: a peer that is not mux is refused at its first byte, with a hint", () => {
  const tls = new Uint8Array([0x16, 0x03, 0x01, 0x00]);
  assert.throws(
    () => new FrameDecoder(new Recorder()).feed(tls, 0, 1),
    /expected the mux preamble "BMUX", got bytes 16: the peer speaks TLS, and this side does not/,
  );
  const http = encoder.encode("GET / HTTP/1.1\r\n");
  assert.throws(
    () => new FrameDecoder(new Recorder()).feed(http, 0, http.length),
    /got bytes 47 45 54 20: the peer is not a burrow mux endpoint/,
  );
});

Deno.test("mux decoder: random bytes after the preamble throw only MuxProtocolError", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 2000 }),
      fc.array(fc.nat(2000), { maxLength: 8 }),
      (junk, cuts) => {
        const bytes = concat([preamble(), junk]);
        const decoder = new FrameDecoder(new Recorder());
        const buf = new Uint8Array(bytes.length);
        let start = 0;
        let end = 0;
        try {
          for (
            const cut of [
              ...cuts.filter((c) => c < bytes.length).sort((a, b) => a - b),
              bytes.length,
            ]
          ) {
            if (cut <= end) continue;
            buf.set(bytes.subarray(end, cut), end);
            end = cut;
            start = decoder.feed(buf, start, end);
          }
        } catch (err) {
          if (!(err instanceof MuxProtocolError)) throw err;
        }
      },
    ),
    fuzz(2000),
  );
});
