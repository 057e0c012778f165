/**
 * Stream semantics of the mux session (lib/transport/mux/), each test run
 * over an in-memory pipe and over real loopback TCP: interleaving with exact
 * bytes both ways, flow-control windows, half-close, resets, many streams,
 * dead connections, datagrams beside bulk data, refusals, GoAway, and the
 * tunnel's two-way copy running over a stream.
 */

import assert from "node:assert/strict";
import { join } from "../../lib/tunnel/join.ts";
import {
  MUX_HEADROOM,
  MuxClosedError,
  MuxConnectionError,
  MuxSession,
  type MuxStream,
  StreamResetError,
} from "../../lib/transport/mux/mod.ts";
import {
  LINKS,
  muxRig,
  pattern,
  readAll,
  sha256,
  until,
  writeAllThenClose,
} from "../helpers/mux_rig.ts";
import { memoryPipe } from "../helpers/memory_pipe.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const KiB = 1024;
const MiB = 1024 * KiB;

/** Reads everything from `stream` and writes it back, then half-closes. */
async function echo(stream: MuxStream): Promise<void> {
  const buf = new Uint8Array(32 * KiB);
  while (true) {
    const n = await stream.read(buf);
    if (n === null) break;
    let off = 0;
    while (off < n) off += await stream.write(buf.subarray(off, n));
  }
  await stream.closeWrite();
}

/** Echoes every stream the session accepts, until it stops accepting. */
async function echoAll(session: { incoming(): AsyncGenerator<MuxStream> }): Promise<void> {
  const running: Promise<void>[] = [];
  for await (const s of session.incoming()) {
    running.push(echo(s).catch(() => {}).finally(() => s.close()));
  }
  await Promise.all(running);
}

Deno.test("mux: closeWrite while a large write is on the wire still sends the FIN", async () => {
  // The server side starts late, so the small pipe holds the write on the wire.
  const [a, b] = memoryPipe(16 * KiB);
  const client = new MuxSession(a, { role: "client" });
  let server: MuxSession | undefined;
  try {
    const s = client.openStream();
    const sent = pattern(200 * KiB, 77); // one frame, sent straight from this buffer
    const writing = s.write(sent);
    await until(() => a.written === 16 * KiB, 5_000, "the pipe to fill");
    const closing = s.closeWrite();
    server = new MuxSession(b, { role: "server" });
    const got = await readAll((await server.accept())!);
    await Promise.all([writing, closing]);
    assert.equal(await sha256(got), await sha256(sent));
  } finally {
    client.close();
    server?.close();
  }
});

for (const link of LINKS) {
  Deno.test(`mux ${link}: many streams both ways interleave with every byte exact`, async () => {
    await using rig = await muxRig(link);
    const serving = echoAll(rig.server);
    // The server side opens streams too, to a client that echoes them.
    const clientEchoes = echoAll(rig.client);
    const sizes = [0, 1, 1000, 64 * KiB - 1, 64 * KiB + 1, 300 * KiB, 1 * MiB + 7, 3 * MiB];
    const rounds = async (
      open: () => MuxStream,
      seedBase: number,
      parity: number,
    ) => {
      await Promise.all(sizes.map(async (size, i) => {
        const stream = open();
        assert.equal(stream.id % 2, parity);
        const sent = pattern(size, seedBase + i);
        const [, back] = await Promise.all([
          writeAllThenClose(stream, sent, 50_000),
          readAll(stream),
        ]);
        assert.equal(back.length, size);
        assert.equal(await sha256(back), await sha256(sent));
        stream.close();
      }));
    };
    await Promise.all([
      rounds(() => rig.client.openStream(), 100, 1),
      rounds(() => rig.client.openStream(), 200, 1),
      rounds(() => rig.server.openStream(), 300, 0),
    ]);
    assert.equal(rig.client.stats.streams, 0);
    assert.equal(rig.server.stats.streams, 0);
    rig.client.close();
    await Promise.all([serving, clientEchoes]);
  });

  Deno.test(`mux ${link}: a reader that stops stalls only its own stream, with bounded buffers`, async () => {
    await using rig = await muxRig(link, {}, { sessionWindow: 8 * MiB });
    const stalled = rig.client.openStream(encoder.encode("stalled"));
    const stalledBytes = pattern(4 * MiB, 1);
    let stalledWritten = false;
    const stalledWrite = writeAllThenClose(stalled, stalledBytes).then(() => stalledWritten = true);
    stalledWrite.catch(() => {}); // awaited below; a failure before that must not go unhandled
    const stalledPeer = (await rig.server.accept())!;
    assert.equal(decoder.decode(stalledPeer.header), "stalled");

    // Another stream moves 16 MiB (four times the stalled one) while the first sits unread.
    const flowing = rig.client.openStream(encoder.encode("flowing"));
    const flowingBytes = pattern(16 * MiB, 2);
    const [, got] = await Promise.all([
      writeAllThenClose(flowing, flowingBytes),
      rig.server.accept().then((s) => readAll(s!)),
    ]);
    assert.equal(await sha256(got), await sha256(flowingBytes));
    assert.equal(stalledWritten, false, "the stalled stream's writer must be waiting for credit");
    const buffered = rig.server.stats.buffered;
    assert.ok(buffered > 0 && buffered <= 256 * KiB, `buffered ${buffered} bytes, window 256 KiB`);

    // Many stalled streams together stay within the session window: a sender
    // stops once at least three quarters of it sits unread.
    const many = Array.from({ length: 40 }, (_, i) => {
      const s = rig.client.openStream();
      writeAllThenClose(s, pattern(1 * MiB, 10 + i)).catch(() => {});
      return s;
    });
    await until(() => rig.server.stats.buffered >= 6 * MiB, 20_000, "the session window to fill");
    assert.ok(
      rig.server.stats.buffered <= 8 * MiB + 256 * KiB,
      `${rig.server.stats.buffered} bytes`,
    );
    for (const s of many) s.reset("done");

    // Once read, the stalled stream delivers every byte.
    const late = await readAll(stalledPeer);
    await stalledWrite;
    assert.equal(await sha256(late), await sha256(stalledBytes));
  });

  Deno.test(`mux ${link}: half-close in each direction`, async () => {
    await using rig = await muxRig(link);
    // The opener finishes first: the acceptor reads end of stream, then answers.
    const a = rig.client.openStream();
    await a.write(encoder.encode("question"));
    await a.closeWrite();
    const aPeer = (await rig.server.accept())!;
    assert.equal(decoder.decode(await readAll(aPeer)), "question");
    await aPeer.write(encoder.encode("answer, after your FIN"));
    await aPeer.closeWrite();
    assert.equal(decoder.decode(await readAll(a)), "answer, after your FIN");
    await assert.rejects(a.write(encoder.encode("x")), MuxClosedError);
    a.close();
    aPeer.close();

    // The acceptor finishes first while the opener keeps sending.
    const b = rig.client.openStream();
    await b.write(encoder.encode("hello"));
    const bPeer = (await rig.server.accept())!;
    await bPeer.write(encoder.encode("bye"));
    await bPeer.closeWrite();
    assert.equal(decoder.decode(await readAll(b)), "bye");
    const more = pattern(2 * MiB, 5);
    const [, all] = await Promise.all([writeAllThenClose(b, more), readAll(bPeer)]);
    assert.equal(decoder.decode(all.subarray(0, 5)), "hello");
    assert.equal(await sha256(all.subarray(5)), await sha256(more));
    b.close();
    bPeer.close();
    await until(
      () => rig.client.streamCount === 0 && rig.server.streamCount === 0,
      5_000,
      "release",
    );
  });

  Deno.test(`mux ${link}: reset either way fails that stream only, at once`, async () => {
    await using rig = await muxRig(link);
    // The opener resets while the acceptor waits in read and write.
    const a = rig.client.openStream();
    await a.write(encoder.encode("start"));
    const aPeer = (await rig.server.accept())!;
    const buf = new Uint8Array(100);
    assert.equal(await aPeer.read(buf), 5);
    const pendingRead = aPeer.read(buf);
    a.reset("user went away");
    const err = await pendingRead.then(() => null, (e) => e);
    assert.ok(err instanceof StreamResetError, String(err));
    assert.equal(err.remote, true);
    assert.equal(err.refused, false);
    assert.equal(err.reason, "user went away");
    await assert.rejects(aPeer.write(encoder.encode("late")), StreamResetError);
    await assert.rejects(a.read(buf), (e: StreamResetError) => !e.remote);

    // The acceptor resets a writer that is blocked on its window.
    const b = rig.client.openStream();
    const blocked = b.write(pattern(2 * MiB, 3));
    const bPeer = (await rig.server.accept())!;
    await until(() => rig.server.stats.buffered > 0, 5_000, "data to arrive");
    bPeer.reset("no thanks");
    await assert.rejects(blocked, (e: StreamResetError) => e.remote && e.reason === "no thanks");

    // Closing with data still arriving resets too; the peer's writes fail.
    const c = rig.client.openStream();
    const cPeerP = rig.server.accept();
    await c.write(encoder.encode("ignored"));
    const cPeer = (await cPeerP)!;
    cPeer.close();
    await assert.rejects(
      (async () => {
        while (true) await c.write(pattern(64 * KiB, 4));
      })(),
      StreamResetError,
    );

    // The session and a fresh stream are unaffected.
    const d = rig.client.openStream();
    const [, back] = await Promise.all([
      writeAllThenClose(d, encoder.encode("still fine")),
      rig.server.accept().then(async (s) => {
        await echo(s!);
        return null;
      }).then(() => readAll(d)),
    ]);
    assert.equal(decoder.decode(back), "still fine");
    assert.equal(rig.client.canOpen, true);
  });

  Deno.test(`mux ${link}: 1000 concurrent streams, each echoed exactly`, async () => {
    await using rig = await muxRig(link);
    const serving = echoAll(rig.server);
    const started = performance.now();
    const streams = Array.from({ length: 1000 }, () => rig.client.openStream());
    assert.equal(rig.client.streamCount, 1000);
    await Promise.all(streams.map(async (s, i) => {
      const sent = pattern(1000 + (i % 7) * 300, i + 1);
      const [, back] = await Promise.all([writeAllThenClose(s, sent), readAll(s)]);
      assert.equal(await sha256(back), await sha256(sent), `stream ${s.id}`);
      s.close();
    }));
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 20_000, `1000 streams took ${elapsed} ms`);
    // Many streams ready at once leave in shared writes.
    assert.ok(rig.client.stats.writes < 1000, `${rig.client.stats.writes} writes for 1000 streams`);
    rig.client.close();
    await serving;
  });

  Deno.test(`mux ${link}: a connection that closes fails all its streams promptly`, async () => {
    await using rig = await muxRig(link);
    const streams = Array.from({ length: 10 }, () => rig.client.openStream());
    for (const s of streams) await s.write(encoder.encode("x"));
    const peers = await Promise.all(streams.map(() => rig.server.accept()));
    const buf = new Uint8Array(10);
    for (const p of peers) assert.equal(await p!.read(buf), 1);
    const reads = streams.map((s) => s.read(buf).then(() => null, (e) => e));
    const peerReads = peers.map((p) => p!.read(buf).then(() => null, (e) => e));
    const started = performance.now();
    rig.serverConn.close(); // the server's socket dies under its session
    const errors = await Promise.all([...reads, ...peerReads]);
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 2_000, `streams failed after ${elapsed} ms`);
    for (const e of errors.slice(0, 10)) assert.ok(e instanceof MuxConnectionError, String(e));
    for (const e of errors) assert.ok(e instanceof Error, String(e));
    const reason = await rig.client.closed;
    assert.equal(reason.kind, "failed");
    await assert.rejects(streams[0]!.write(encoder.encode("y")), MuxConnectionError);
    assert.throws(() => rig.client.openStream(), MuxClosedError);
  });

  Deno.test(`mux ${link}: a silently dead link fails its streams within the keepalive timeout`, async () => {
    const quick = { keepaliveMs: 100, timeoutMs: 600 };
    await using rig = await muxRig(link, quick, quick);
    const s = rig.client.openStream();
    await s.write(encoder.encode("hello"));
    const peer = (await rig.server.accept())!;
    const buf = new Uint8Array(10);
    assert.equal(await peer.read(buf), 5);
    const started = performance.now();
    rig.freeze();
    const [mine, theirs] = await Promise.all([
      s.read(buf).then(() => null, (e) => e),
      peer.read(buf).then(() => null, (e) => e),
    ]);
    const elapsed = performance.now() - started;
    assert.ok(mine instanceof MuxConnectionError, String(mine));
    assert.ok(theirs instanceof MuxConnectionError, String(theirs));
    assert.match(mine.message, /no frames from the peer/);
    assert.ok(elapsed >= 500 && elapsed < 5_000, `detected after ${elapsed} ms`);
  });

  Deno.test(`mux ${link}: datagrams arrive promptly beside a bulk stream`, async () => {
    await using rig = await muxRig(link);
    const bulk = rig.client.openStream();
    let sending = true;
    const chunk = pattern(256 * KiB, 9);
    const writer = (async () => {
      while (sending) await bulk.write(chunk);
      await bulk.closeWrite();
    })();
    const bulkPeer = (await rig.server.accept())!;
    const drained = readAll(bulkPeer);
    await until(() => rig.server.stats.bytesIn > 8 * MiB, 20_000, "bulk data to flow");

    const latencies: number[] = [];
    const arrivals = (async () => {
      for await (const d of rig.server.datagrams()) {
        const sentAt = new DataView(d.payload.buffer, d.payload.byteOffset).getFloat64(0);
        assert.equal(d.flowId, 7);
        latencies.push(performance.now() - sentAt);
        if (latencies.length === 50) return;
      }
    })();
    for (let i = 0; i < 50; i++) {
      const payload = new Uint8Array(1200);
      new DataView(payload.buffer).setFloat64(0, performance.now());
      assert.equal(rig.client.sendDatagram(7, payload), true);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await arrivals;
    const bytesDuring = rig.server.stats.bytesIn;
    sending = false;
    await writer;
    await drained;
    latencies.sort((a, b) => a - b);
    const worst = latencies[latencies.length - 1]!;
    assert.ok(worst < 500, `slowest datagram took ${worst.toFixed(1)} ms`);
    assert.ok(bytesDuring > 8 * MiB);
    assert.equal(rig.client.stats.datagramsDroppedOut, 0);
  });

  Deno.test(`mux ${link}: a full datagram queue drops and counts, never blocks`, async () => {
    await using rig = await muxRig(link, {}, { datagramQueue: 10 });
    const payload = pattern(1000, 1);
    let accepted = 0;
    for (let i = 0; i < 2000; i++) if (rig.client.sendDatagram(i, payload)) accepted++;
    assert.ok(accepted < 2000, "the send queue is bounded");
    assert.equal(rig.client.stats.datagramsDroppedOut, 2000 - accepted);
    await until(() => rig.server.stats.datagramsDroppedIn > 0, 10_000, "receive drops");
    // The ten that were queued are the first ten.
    for (let i = 0; i < 10; i++) {
      const d = await rig.server.receiveDatagram();
      assert.equal(d?.flowId, i);
      assert.deepEqual(d?.payload, payload);
    }
  });

  Deno.test(`mux ${link}: open carries a header, and data follows without a round trip`, async () => {
    await using rig = await muxRig(link);
    const header = encoder.encode(JSON.stringify({ app: "web", user: "203.0.113.9:5555" }));
    const s = rig.client.openStream(header);
    await writeAllThenClose(s, encoder.encode("GET / HTTP/1.0\r\n\r\n"));
    // Everything was queued before the peer accepted anything.
    const peer = (await rig.server.accept())!;
    assert.deepEqual(JSON.parse(decoder.decode(peer.header)), {
      app: "web",
      user: "203.0.113.9:5555",
    });
    assert.equal(decoder.decode(await readAll(peer)), "GET / HTTP/1.0\r\n\r\n");
    assert.ok(typeof (await rig.client.ping()) === "number");
  });

  Deno.test(`mux ${link}: streams past the peer's limits are refused, safely retryable`, async () => {
    await using rig = await muxRig(link, {}, { maxStreams: 2, acceptBacklog: 2 });
    const first = rig.client.openStream();
    const second = rig.client.openStream();
    const third = rig.client.openStream();
    await third.write(encoder.encode("dropped")).catch(() => {});
    const err = await third.read(new Uint8Array(10)).then(() => null, (e) => e);
    assert.ok(err instanceof StreamResetError, String(err));
    assert.equal(err.refused, true);
    assert.match(err.message, /too many streams/);
    assert.equal(rig.server.stats.refused, 1);
    for (const s of [first, second]) await writeAllThenClose(s, encoder.encode(`id ${s.id}`));
    const got = await Promise.all([rig.server.accept(), rig.server.accept()]);
    assert.deepEqual(
      await Promise.all(got.map(async (s) => decoder.decode(await readAll(s!)))),
      [`id ${first.id}`, `id ${second.id}`],
    );
  });

  Deno.test(`mux ${link}: GoAway lets open streams finish, refuses new ones, then drains`, async () => {
    await using rig = await muxRig(link);
    const s = rig.client.openStream();
    await s.write(encoder.encode("before"));
    const peer = (await rig.server.accept())!;
    const closed = rig.server.goAway("restarting");
    await until(() => !rig.client.canOpen, 5_000, "the client to hear the GoAway");
    assert.throws(() => rig.client.openStream(), /going away/);
    assert.throws(() => rig.server.openStream(), /going away/);
    assert.equal(await rig.server.accept(), null);
    // The open stream still works both ways.
    await writeAllThenClose(s, encoder.encode(" and after"));
    assert.equal(decoder.decode(await readAll(peer)), "before and after");
    await writeAllThenClose(peer, encoder.encode("reply"));
    assert.equal(decoder.decode(await readAll(s)), "reply");
    s.close();
    peer.close();
    assert.deepEqual(await closed, { kind: "drained" });
    assert.deepEqual(await rig.client.closed, { kind: "drained" });
  });

  Deno.test(`mux ${link}: the tunnel's join copies over a stream`, async () => {
    await using rig = await muxRig(link);
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const [user, inner] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
      listener.accept(),
    ]);
    const stream = rig.client.openStream();
    const joined = join(inner, stream);
    const peer = (await rig.server.accept())!;
    const echoing = echo(peer);
    const sent = pattern(5 * MiB, 11);
    const [, back] = await Promise.all([writeAllThenClose(user, sent), readAll(user)]);
    user.close();
    const result = await joined;
    await echoing;
    peer.close();
    assert.equal(result.error, undefined);
    assert.equal(result.aToB, sent.length);
    assert.equal(result.bToA, sent.length);
    assert.equal(await sha256(back), await sha256(sent));
    await until(() => rig.client.streamCount === 0, 5_000, "the stream to be released");
  });

  Deno.test(`mux ${link}: writes with headroom arrive exactly, whatever their size`, async () => {
    await using rig = await muxRig(link);
    const s = rig.client.openStream();
    const sizes = [1, 5000, 20_000, 70_000, 256 * KiB, 300 * KiB, 1 * MiB];
    const sent: Uint8Array[] = [];
    const writing = (async () => {
      for (const [i, size] of sizes.entries()) {
        const frame = new Uint8Array(MUX_HEADROOM + size);
        frame.set(pattern(size, 50 + i), MUX_HEADROOM);
        sent.push(frame.slice(MUX_HEADROOM));
        assert.equal(await s.writeWithHeadroom(frame), size);
      }
      await s.closeWrite();
    })();
    const got = await readAll((await rig.server.accept())!);
    await writing;
    const all = new Uint8Array(sent.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of sent) {
      all.set(p, off);
      off += p.length;
    }
    assert.equal(await sha256(got), await sha256(all));
  });

  Deno.test(`mux ${link}: bulk streams do not starve an interactive one`, async () => {
    await using rig = await muxRig(link);
    let sending = true;
    const chunk = pattern(256 * KiB, 21);
    const bulks = Array.from({ length: 8 }, () => {
      const s = rig.client.openStream(encoder.encode("bulk"));
      return (async () => {
        while (sending) await s.write(chunk);
        await s.closeWrite();
      })();
    });
    const serving = (async () => {
      const running: Promise<unknown>[] = [];
      for await (const s of rig.server.incoming()) {
        running.push(decoder.decode(s.header) === "bulk" ? readAll(s) : echo(s));
      }
      await Promise.all(running);
    })();
    await until(() => rig.server.stats.bytesIn > 16 * MiB, 20_000, "bulk data to flow");
    const chat = rig.client.openStream(encoder.encode("chat"));
    const buf = new Uint8Array(100);
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      await chat.write(pattern(100, i));
      let got = 0;
      while (got < 100) got += (await chat.read(buf.subarray(got))) ?? Infinity;
      times.push(performance.now() - started);
    }
    const during = rig.server.stats.bytesIn;
    sending = false;
    await Promise.all(bulks);
    await chat.closeWrite();
    assert.ok(during > 16 * MiB);
    times.sort((a, b) => a - b);
    const worst = times[times.length - 1]!;
    assert.ok(worst < 1_000, `slowest interactive round trip ${worst.toFixed(1)} ms`);
    rig.client.close();
    await serving.catch(() => {});
  });

  Deno.test(`mux ${link}: a reset in the middle of a large write fails it, not the session`, async () => {
    await using rig = await muxRig(link);
    const s = rig.client.openStream();
    const big = s.write(pattern(8 * MiB, 31));
    const peer = (await rig.server.accept())!;
    const buf = new Uint8Array(64 * KiB);
    assert.ok((await peer.read(buf))! > 0);
    s.reset("abandon");
    await assert.rejects(big, StreamResetError);
    await assert.rejects(
      (async () => {
        while ((await peer.read(buf)) !== null) { /* bytes framed before the reset */ }
      })(),
      (e: StreamResetError) => e.remote && e.reason === "abandon",
    );
    const next = rig.client.openStream();
    await writeAllThenClose(next, encoder.encode("after"));
    assert.equal(decoder.decode(await readAll((await rig.server.accept())!)), "after");
  });
}
