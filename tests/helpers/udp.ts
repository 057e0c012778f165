/**
 * UDP for tests, on 127.0.0.1 (node:dgram, which is stable in Deno): a
 * local service that runs a handler for every datagram (an echo service and
 * a small DNS responder are built on it) and remembers which sources it
 * heard, and a user socket that sends and waits for datagrams (never a fixed
 * sleep: a receive waits for the datagram or fails after its timeout).
 *
 * @module
 */

import dgram from "node:dgram";

/** A local UDP service for tests; `using` closes it. */
export interface UdpService extends Disposable {
  port: number;
  addr: string;
  /** Datagrams received so far. */
  received: number;
  /** Every source (`ip:port`) heard so far. */
  sources: Set<string>;
  close(): void;
}

/** A UDP service on 127.0.0.1 answering each datagram with what `answer` returns (nothing: no answer). */
export async function udpService(
  answer: (msg: Uint8Array, from: string) => Uint8Array | undefined,
): Promise<UdpService> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const port = socket.address().port;
  const service: UdpService = {
    port,
    addr: `127.0.0.1:${port}`,
    received: 0,
    sources: new Set(),
    close() {
      try {
        socket.close();
      } catch { /* closed */ }
    },
    [Symbol.dispose]() {
      service.close();
    },
  };
  socket.on("message", (msg, rinfo) => {
    const from = `${rinfo.address}:${rinfo.port}`;
    service.received++;
    service.sources.add(from);
    const reply = answer(new Uint8Array(msg), from);
    if (reply !== undefined) socket.send(reply, rinfo.port, rinfo.address);
  });
  return service;
}

/** Echoes every datagram back to its sender. */
export function udpEcho(): Promise<UdpService> {
  return udpService((msg) => msg);
}

/** One datagram as a user socket got it. */
export interface Received {
  payload: Uint8Array<ArrayBuffer>;
  from: string;
}

/** A user's UDP socket on 127.0.0.1; `using` closes it. */
export class UdpUser implements Disposable {
  readonly socket: dgram.Socket;
  #queue: Received[] = [];
  #waiters: Array<(r: Received) => void> = [];

  private constructor(socket: dgram.Socket) {
    this.socket = socket;
    socket.on("message", (msg, rinfo) => {
      const r = { payload: new Uint8Array(msg), from: `${rinfo.address}:${rinfo.port}` };
      const waiter = this.#waiters.shift();
      if (waiter) waiter(r);
      else this.#queue.push(r);
    });
  }

  /** A socket bound to `port` (by default a free one). */
  static async open(port = 0): Promise<UdpUser> {
    const socket = dgram.createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(port, "127.0.0.1", () => resolve());
    });
    return new UdpUser(socket);
  }

  /** This socket's port. */
  get port(): number {
    return this.socket.address().port;
  }

  /** Sends `payload` to 127.0.0.1:`port`. */
  send(payload: Uint8Array, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.send(payload, port, "127.0.0.1", (err) => err ? reject(err) : resolve());
    });
  }

  /** The next datagram, or an error after `timeoutMs`. */
  receive(timeoutMs = 10_000): Promise<Received> {
    const next = this.#queue.shift();
    if (next) return Promise.resolve(next);
    return new Promise((resolve, reject) => {
      const waiter = (r: Received) => {
        clearTimeout(timer);
        resolve(r);
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`no datagram within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /** Datagrams received and not yet taken. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Sends `payload` until an answer comes (each try waits `tryMs`), at most
   * `tries` times: for the first datagram of a flow, which a server still
   * starting up may not have heard. Returns the answer.
   */
  async ask(payload: Uint8Array, port: number, tries = 20, tryMs = 500): Promise<Received> {
    let last: unknown;
    for (let i = 0; i < tries; i++) {
      await this.send(payload, port);
      try {
        return await this.receive(tryMs);
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }

  close(): void {
    try {
      this.socket.close();
    } catch { /* closed */ }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** The address a {@linkcode dnsResponder} answers every A query with. */
export const DNS_ANSWER = "192.0.2.53";

/**
 * A DNS responder for tests: answers each query for an A record with
 * {@linkcode DNS_ANSWER} (TTL 60), any other type with no answer, and a
 * malformed message with nothing. Enough for `dig`.
 */
export function dnsResponder(): Promise<UdpService> {
  return udpService((query) => dnsAnswer(query, DNS_ANSWER));
}

/** The answer to a DNS `query` (one question), or undefined if it is not one. */
export function dnsAnswer(query: Uint8Array, address: string): Uint8Array | undefined {
  if (query.length < 12) return undefined;
  const view = new DataView(query.buffer, query.byteOffset, query.byteLength);
  if ((view.getUint16(2) & 0x8000) !== 0 || view.getUint16(4) !== 1) return undefined;
  let at = 12;
  while (at < query.length && query[at] !== 0) at += (query[at] as number) + 1;
  const end = at + 5; // the zero label, QTYPE and QCLASS
  if (end > query.length) return undefined;
  const qtype = view.getUint16(at + 1);
  const question = query.subarray(12, end);
  const a = qtype === 1;
  const out = new Uint8Array(12 + question.length + (a ? 16 : 0));
  const w = new DataView(out.buffer);
  w.setUint16(0, view.getUint16(0)); // id
  w.setUint16(2, 0x8000 | (view.getUint16(2) & 0x0100) | 0x0080); // QR, RD as asked, RA
  w.setUint16(4, 1);
  w.setUint16(6, a ? 1 : 0);
  out.set(question, 12);
  if (a) {
    let o = 12 + question.length;
    w.setUint16(o, 0xc00c); // the name: a pointer to the question's
    w.setUint16(o + 2, 1); // A
    w.setUint16(o + 4, 1); // IN
    w.setUint32(o + 6, 60);
    w.setUint16(o + 10, 4);
    o += 12;
    for (const part of address.split(".")) out[o++] = Number(part);
  }
  return out;
}
