/**
 * `join`'s lead (`bToALead`): the client's one-byte answer on a work stream
 * travels in the frame of the app's first bytes instead of a write of its
 * own. The app side is real loopback TCP; the stream side records each
 * write it is given, so the tests see how many frames the stream would send.
 */

import assert from "node:assert/strict";
import { join, type Lead } from "../../lib/tunnel/join.ts";
import { MUX_HEADROOM } from "../../lib/transport/mux/mod.ts";

/** What one write on the recording stream carried. */
interface Written {
  how: "data" | "fin";
  bytes: Uint8Array;
  at: number;
}

/** A stream side that never sends the app anything and records what it is given. */
class RecordingStream {
  readonly written: Written[] = [];
  #end = Promise.withResolvers<null>();
  #closed = false;
  #changed = Promise.withResolvers<void>();

  constructor(readonly framed: boolean) {}

  read(_p: Uint8Array): Promise<number | null> {
    return this.#end.promise;
  }
  write(p: Uint8Array): Promise<number> {
    this.#record("data", p.slice());
    return Promise.resolve(p.length);
  }
  closeWrite(): Promise<void> {
    this.#record("fin", new Uint8Array(0));
    return Promise.resolve();
  }
  close(): void {
    this.#closed = true;
    this.#end.resolve(null);
  }
  /** The user side ends its direction (as a FIN from the server). */
  end(): void {
    this.#end.resolve(null);
  }
  /** Resolves once `n` writes have been recorded. */
  async writes(n: number): Promise<Written[]> {
    while (this.written.length < n) await this.#changed.promise;
    return this.written;
  }
  get closed(): boolean {
    return this.#closed;
  }
  #record(how: Written["how"], bytes: Uint8Array): void {
    this.written.push({ how, bytes, at: performance.now() });
    this.#changed.resolve();
    this.#changed = Promise.withResolvers<void>();
  }
}

/** Only a framed stream frames in place: `join` looks for this method. */
class FramedStream extends RecordingStream {
  constructor() {
    super(true);
  }
  writeWithHeadroom(frame: Uint8Array): Promise<number> {
    // Recorded like a plain write, the headroom stripped.
    return this.write(frame.subarray(MUX_HEADROOM)).then(() => frame.length - MUX_HEADROOM);
  }
}

async function appPair(): Promise<{ app: Deno.TcpConn; local: Deno.TcpConn }> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [local, app] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  return { app, local };
}

const LEAD = new Uint8Array([0]);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function run(
  stream: RecordingStream,
  lead: Lead,
  app: (conn: Deno.TcpConn) => Promise<void>,
): Promise<Written[]> {
  const { app: appConn, local } = await appPair();
  const joined = join(stream, local, { bToALead: lead });
  await app(appConn);
  const result = await joined;
  assert.equal(result.error, undefined);
  return stream.written;
}

Deno.test("the lead goes in the frame of the app's first bytes: one write, not two", async () => {
  const stream = new FramedStream();
  const written = await run(stream, { bytes: LEAD, withinMs: 5_000 }, async (app) => {
    await app.write(new TextEncoder().encode("hello"));
    await stream.writes(1);
    app.close();
    stream.end();
  });
  assert.deepEqual(written.map((w) => w.how), ["data", "fin"]);
  assert.deepEqual([...written[0]!.bytes], [0, ...new TextEncoder().encode("hello")]);
});

Deno.test("a silent app: the lead goes alone after withinMs, its bytes after it", async () => {
  const stream = new FramedStream();
  const started = performance.now();
  const written = await run(stream, { bytes: LEAD, withinMs: 60 }, async (app) => {
    await stream.writes(1);
    await app.write(new TextEncoder().encode("late"));
    await stream.writes(2);
    app.close();
    stream.end();
  });
  assert.deepEqual(written.map((w) => w.how), ["data", "data", "fin"]);
  assert.deepEqual([...written[0]!.bytes], [0]);
  assert.ok(written[0]!.at - started >= 55, `the lead went after ${written[0]!.at - started} ms`);
  assert.equal(text(written[1]!.bytes), "late");
});

Deno.test("an app that closes without a byte: the lead, then the FIN", async () => {
  const stream = new FramedStream();
  const written = await run(stream, { bytes: LEAD, withinMs: 5_000 }, (app) => {
    app.close();
    stream.end();
    return Promise.resolve();
  });
  assert.deepEqual(written.map((w) => w.how), ["data", "fin"]);
  assert.deepEqual([...written[0]!.bytes], [0]);
});

Deno.test("a stream that cannot frame in place gets the lead first, on its own", async () => {
  const stream = new RecordingStream(false);
  const written = await run(stream, { bytes: LEAD, withinMs: 5_000 }, async (app) => {
    await stream.writes(1);
    await app.write(new TextEncoder().encode("x"));
    await stream.writes(2);
    app.close();
    stream.end();
  });
  assert.deepEqual(written.map((w) => text(w.bytes)), ["\0", "x", ""]);
});

Deno.test("with bytes to send first as well, the lead still goes before them", async () => {
  const stream = new FramedStream();
  const { app, local } = await appPair();
  const joined = join(stream, local, {
    bToALead: { bytes: LEAD, withinMs: 5_000 },
    bToAFirst: new TextEncoder().encode("pre"),
  });
  await stream.writes(2);
  await app.write(new TextEncoder().encode("x"));
  await stream.writes(3);
  app.close();
  stream.end();
  assert.equal((await joined).error, undefined);
  assert.deepEqual(stream.written.map((w) => text(w.bytes)), ["\0", "pre", "x", ""]);
});
