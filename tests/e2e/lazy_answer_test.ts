/**
 * The client's one-byte answer on a work stream, read off the wire: with
 * TLS off, a relay between the real client and the real server records the
 * client's work connection, and the test decodes its mux frames. For a tcp
 * app with one replica the server asks for a lazy answer, so the answer must
 * ride in the frame of the app's first bytes: per user, one DATA frame
 * carrying the answer and the echo, then the FIN, and no 1-byte frame.
 */

import assert from "node:assert/strict";
import { echoApp, groupFile, readyPort, startClient, startServer } from "../helpers/harness.ts";
import { makeTempDirSync } from "../helpers/temp.ts";
import { RecordingRelay } from "../helpers/relays.ts";
import { concat } from "../helpers/mux_frames.ts";
import {
  DATA,
  DATAGRAM,
  FLAG_FIN,
  GOAWAY,
  HEADER_SIZE,
  MAGIC,
  OPEN,
  PREAMBLE_SIZE,
  readU32,
  RESET,
} from "../../lib/transport/mux/frame.ts";

const TOKEN = "lazy-answer-token-4kQ";
/** Frame types whose `value` is a payload length (WINDOW and PING carry none). */
const WITH_PAYLOAD = new Set([DATA, OPEN, RESET, GOAWAY, DATAGRAM]);

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Uint8Array;
}

/** The mux frames after the first preamble in `bytes` (none if there is no preamble). */
function muxFrames(bytes: Uint8Array): Frame[] {
  let at = -1;
  for (let i = 0; i + PREAMBLE_SIZE <= bytes.length && at < 0; i++) {
    if (MAGIC.every((b, k) => bytes[i + k] === b)) at = i + PREAMBLE_SIZE;
  }
  if (at < 0) return [];
  const frames: Frame[] = [];
  while (at + HEADER_SIZE <= bytes.length) {
    const type = bytes[at]!;
    const size = WITH_PAYLOAD.has(type) ? readU32(bytes, at + 6) : 0;
    frames.push({
      type,
      flags: bytes[at + 1]!,
      id: readU32(bytes, at + 2),
      payload: bytes.subarray(at + HEADER_SIZE, at + HEADER_SIZE + size),
    });
    at += HEADER_SIZE + size;
  }
  return frames;
}

Deno.test("a lone replica's answer rides in the frame of the app's first bytes, on the wire", async () => {
  await using stack = new AsyncDisposableStack();
  const app = echoApp();
  stack.defer(() => app.close());
  const server = stack.use(await startServer({ token: TOKEN, args: ["--no-tls"] }));
  const relay = stack.use(new RecordingRelay(server.port));
  const file = groupFile({
    server: `127.0.0.1:${relay.port}`,
    token: TOKEN,
    group: "lazy",
    apps: [{ name: "echo", local: app.addr }],
  });
  Deno.writeTextFileSync(file, "tls: false\n", { append: true });
  const client = stack.use(startClient(file, ["--state-dir", makeTempDirSync()]));
  const port = await readyPort(client, "lazy", "echo");

  const users = 5;
  for (let i = 0; i < users; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const sent = new TextEncoder().encode(`user ${i} says hello`);
    await conn.write(sent);
    const got = new Uint8Array(sent.length);
    let n = 0;
    while (n < got.length) {
      const k = await conn.read(got.subarray(n));
      if (k === null) break;
      n += k;
    }
    assert.deepEqual(got, sent);
    await conn.closeWrite();
    assert.equal(await conn.read(new Uint8Array(1)), null); // the app's FIN came back
    conn.close();
  }
  await client.stop();

  // The client's work connections: the directions that carry a work_hello before their mux.
  const fromClient = relay.streams.map(concat)
    .filter((b) => new TextDecoder("latin1").decode(b).includes('"work_hello"'));
  const data = fromClient.flatMap(muxFrames).filter((f) => f.type === DATA);
  const byStream = new Map<number, Frame[]>();
  for (const f of data) byStream.set(f.id, [...(byStream.get(f.id) ?? []), f]);
  assert.equal(byStream.size, users, `streams seen: ${[...byStream.keys()]}`);
  for (const [id, frames] of byStream) {
    const first = frames[0]!;
    assert.equal(first.payload[0], 0, `stream ${id}: the answer leads`);
    assert.ok(
      first.payload.length > 1,
      `stream ${id}: the answer went alone (${frames.map((f) => f.payload.length)})`,
    );
    assert.equal(
      new TextDecoder().decode(concat(frames.map((f) => f.payload)).subarray(1)),
      `user ${[...byStream.keys()].sort((a, b) => a - b).indexOf(id)} says hello`,
    );
    assert.ok(frames.at(-1)!.flags & FLAG_FIN, `stream ${id}: no FIN`);
  }
});
