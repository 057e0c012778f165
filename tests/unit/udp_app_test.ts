/**
 * The server's udp app and its flow table, against real UDP sockets and
 * real mux sessions (over in-memory pipes) standing in for the client: each
 * user address is one flow, flows end when idle or when their session dies
 * (and the user's next datagram opens a flow on a live one), and the flow
 * bounds drop and count.
 */

import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { RareLog } from "../../lib/util/rare_log.ts";
import { FlowRoutes } from "../../lib/server/udp_flows.ts";
import { bindUdpPort, UdpApp, type UdpAppSession } from "../../lib/server/udp_app.ts";
import { UdpCounter, UdpFigures } from "../../lib/dashboard/udp_figures.ts";
import { TrafficCounter } from "../../lib/tunnel/traffic.ts";
import { parseWorkHeader, type UdpFlow } from "../../lib/protocol/protocol.ts";
import { type MuxRig, muxRig } from "../helpers/mux_rig.ts";
import { UdpUser } from "../helpers/udp.ts";
import { renderExposition } from "../../lib/dashboard/metrics.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Polls `check` until it holds (at most `timeoutMs`). */
async function until(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * A stand-in for a client: mux sessions whose client side answers every
 * `udp_flow` stream and echoes every datagram, and the `work` a udp app
 * opens flows on (on the session `current` names).
 */
async function fakeClient(count: number) {
  const flows = new FlowRoutes();
  const rigs: MuxRig[] = [];
  const headers: UdpFlow[] = [];
  const ended: UdpFlow[] = [];
  for (let i = 0; i < count; i++) {
    const rig: MuxRig = await muxRig("memory", {}, {
      onDatagram: (id, payload) => flows.deliver(rig.server, id, payload),
    });
    rigs.push(rig);
    (async () => {
      for await (const stream of rig.client.incoming()) {
        const header = parseWorkHeader(JSON.parse(decoder.decode(stream.header)));
        assert.equal(header.type, "udp_flow");
        headers.push(header as UdpFlow);
        await stream.write(new Uint8Array([0]));
        stream.read(new Uint8Array(1)).catch(() => null).then(() => ended.push(header as UdpFlow));
      }
    })().catch(() => {});
    (async () => {
      for await (const d of rig.client.datagrams()) rig.client.sendDatagram(d.flowId, d.payload);
    })().catch(() => {});
  }
  const state = { current: 0, up: true, wake: () => {} };
  const work = {
    flows,
    get idle() {
      return state.up ? 1 : 0;
    },
    /** Resolves once `up()` says a connection is up (like MuxWork's). */
    ready(): Promise<boolean> {
      if (state.up) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => state.wake = () => resolve(true));
    },
    openFlow(flow: UdpFlow) {
      const session = (rigs[state.current] as MuxRig).server;
      return { stream: session.openStream(encoder.encode(JSON.stringify(flow))), session };
    },
  };
  return {
    rigs,
    headers,
    ended,
    state,
    work,
    /** A work connection comes up. */
    up() {
      state.up = true;
      state.wake();
    },
    async [Symbol.asyncDispose]() {
      for (const rig of rigs) await rig[Symbol.asyncDispose]().catch(() => {});
    },
  };
}

async function udpApp(
  work: UdpAppSession["work"],
  o: { idle?: number; perApp?: number; perGroup?: number; groupFlows?: { count: number } } = {},
) {
  const bound = await bindUdpPort("127.0.0.1", 0, [0], () => {});
  if ("code" in bound) throw new Error(bound.message);
  const port = bound.socket.address().port;
  const log = getLogger(["burrow", "test"]);
  const counter = new UdpCounter();
  const traffic = new TrafficCounter();
  const app = new UdpApp(
    {
      log,
      rare: new RareLog(log),
      limits: { udpFlowsPerApp: o.perApp ?? 100, udpFlowsPerGroup: o.perGroup ?? 100 },
    },
    { group: "g", work, udpFlows: o.groupFlows ?? { count: 0 } },
    {
      entry: { group: "g", app: "a", port, since: new Date(), transport: "udp" },
      socket: bound.socket,
      traffic,
      counter,
      idleTimeoutSeconds: o.idle ?? 60,
      requestedPort: 0,
      publicHost: "127.0.0.1",
    },
  );
  return { app, port, counter, traffic };
}

Deno.test("udp app: each user address is one flow, with its own id, and gets only its own replies", async () => {
  await using client = await fakeClient(1);
  const { app, port, counter, traffic } = await udpApp(client.work);
  using a = await UdpUser.open();
  using b = await UdpUser.open();
  for (let i = 0; i < 5; i++) {
    assert.equal(decoder.decode((await a.ask(encoder.encode(`a${i}`), port)).payload), `a${i}`);
    assert.equal(decoder.decode((await b.ask(encoder.encode(`b${i}`), port)).payload), `b${i}`);
  }
  assert.equal(app.flows, 2);
  assert.equal(client.headers.length, 2);
  const [ha, hb] = client.headers as [UdpFlow, UdpFlow];
  assert.notEqual(ha.flow, hb.flow);
  assert.deepEqual(ha.source, { hostname: "127.0.0.1", port: a.port });
  assert.deepEqual(ha.destination, { hostname: "127.0.0.1", port });
  assert.equal(counter.datagramsIn, 10);
  assert.equal(counter.datagramsOut, 10);
  assert.deepEqual(traffic.bytes(), { bytesIn: 20, bytesOut: 20 }); // 2 bytes each
  assert.equal(traffic.connections, 2);
  await app.close();
  assert.equal(traffic.connections, 0);
  await until(() => client.ended.length === 2, "the client's streams to end");
  // The port is free again.
  using again = await UdpUser.open(port);
  assert.equal(again.port, port);
});

Deno.test("udp app: a flow whose mux session dies ends, and the user's next datagram opens one on a live session", async () => {
  await using client = await fakeClient(2);
  const { app, port, traffic } = await udpApp(client.work);
  using user = await UdpUser.open();
  await user.ask(new Uint8Array([1]), port);
  assert.equal(app.flows, 1);
  (client.rigs[0] as MuxRig).clientConn.close(); // the link dies under the flow
  await until(() => app.flows === 0, "the flow to end with its session");
  client.state.current = 1;
  const back = await user.ask(new Uint8Array([2]), port);
  assert.deepEqual(back.payload, new Uint8Array([2]));
  assert.equal(app.flows, 1);
  assert.equal(traffic.total, 2);
  await app.close();
});

Deno.test("udp app: a new flow waits for a work connection, its first datagrams held, none lost", async () => {
  await using client = await fakeClient(1);
  client.state.up = false; // the client's work connections are still dialling
  const { app, port, counter } = await udpApp(client.work);
  using user = await UdpUser.open();
  for (let i = 0; i < 3; i++) await user.send(new Uint8Array([i]), port);
  await until(() => app.flows === 1, "the flow to be opened");
  assert.equal(client.headers.length, 0, "no stream before a work connection is up");
  client.up();
  const got = [await user.receive(), await user.receive(), await user.receive()];
  assert.deepEqual(got.map((r) => r.payload[0]), [0, 1, 2]);
  assert.equal(counter.droppedTotal, 0);
  await app.close();
});

Deno.test("udp app: an idle flow ends on both sides", async () => {
  await using client = await fakeClient(1);
  const { app, port } = await udpApp(client.work, { idle: 0.2 });
  using user = await UdpUser.open();
  await user.ask(new Uint8Array([1]), port);
  await until(() => app.flows === 0, "the idle flow to end");
  await until(() => client.ended.length === 1, "the client's stream to end");
  await app.close();
});

Deno.test("udp app: beyond the app's and the group's flow bounds a new address is dropped and counted", async () => {
  await using client = await fakeClient(1);
  const groupFlows = { count: 0 };
  const one = await udpApp(client.work, { perApp: 2, perGroup: 3, groupFlows });
  const two = await udpApp(client.work, { perApp: 2, perGroup: 3, groupFlows });
  const users = await Promise.all([1, 2, 3, 4].map(() => UdpUser.open()));
  try {
    const [u1, u2, u3, u4] = users as [UdpUser, UdpUser, UdpUser, UdpUser];
    await u1.ask(new Uint8Array([1]), one.port);
    await u2.ask(new Uint8Array([2]), one.port);
    await u3.send(new Uint8Array([3]), one.port); // a third flow on the app: over its bound
    await until(() => one.counter.dropped.app_flow_limit === 1, "the app's drop");
    await u3.ask(new Uint8Array([3]), two.port); // the group's third flow: allowed
    await u4.send(new Uint8Array([4]), two.port); // the group's fourth: over its bound
    await until(() => two.counter.dropped.group_flow_limit === 1, "the group's drop");
    assert.equal(groupFlows.count, 3);
    assert.equal(one.app.flows + two.app.flows, 3);
    assert.equal(u4.queued, 0);
    await one.app.close();
    assert.equal(groupFlows.count, 1);
    await two.app.close();
    assert.equal(groupFlows.count, 0);
  } finally {
    for (const u of users) u.close();
  }
});

Deno.test("flow routes: fresh ids, and a datagram only reaches its flow from the flow's own session", () => {
  const routes = new FlowRoutes();
  const got: number[] = [];
  const a = routes.nextId();
  const b = routes.nextId();
  assert.notEqual(a, b);
  const session = {};
  routes.add(a, session, (p) => got.push(p.length));
  routes.deliver(session, a, new Uint8Array(3));
  routes.deliver({}, a, new Uint8Array(4)); // another session's flow id
  routes.deliver(session, b, new Uint8Array(5)); // no such flow
  assert.deepEqual(got, [3]);
  assert.equal(routes.unknown, 2);
  routes.delete(a);
  routes.deliver(session, a, new Uint8Array(6));
  assert.equal(routes.unknown, 3);
  assert.equal(routes.size, 0);
});

Deno.test("udp figures: datagram and drop families per app, and udp rows on the dashboard", () => {
  const figures = new UdpFigures();
  const counter = figures.counter("g", "dns");
  assert.equal(figures.counter("g", "dns"), counter, "the same counter across exposures");
  counter.datagramsIn = 5;
  counter.datagramsOut = 4;
  counter.dropped.app_flow_limit = 2;
  const text = renderExposition(figures.families(), "text");
  assert.match(text, /burrow_udp_datagrams_total\{group="g",app="dns",direction="in"\} 5/);
  assert.match(text, /burrow_udp_datagrams_total\{group="g",app="dns",direction="out"\} 4/);
  assert.match(text, /burrow_udp_dropped_total\{group="g",app="dns",cause="app_flow_limit"\} 2/);
  assert.match(text, /burrow_udp_dropped_total\{group="g",app="dns",cause="queue_full"\} 0/);
  const row = {
    name: "dns",
    port: 5353,
    online: true,
    connections: 1,
    connectionsTotal: 1,
    bytesIn: 0,
    bytesOut: 0,
    lastActivity: null,
    traffic: { in: [], out: [] },
  };
  // deno-lint-ignore no-explicit-any
  const [group] = figures.annotate([{ name: "g", apps: [row] } as any]);
  assert.equal(group?.apps[0]?.type, "udp");
  assert.deepEqual(group?.apps[0]?.udp, { datagramsIn: 5, datagramsOut: 4, dropped: 2 });
});
