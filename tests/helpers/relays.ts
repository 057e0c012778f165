/**
 * Man-in-the-middle programs for tests: TCP relays and proxies that sit
 * between a client and a server, to freeze links, record what crosses them,
 * change the source address, or impersonate the server.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import * as net from "node:net";
import { suiteCa, writeAll } from "./harness.ts";

/**
 * A TCP proxy in this process between a client and the server. `freeze()`
 * makes every link open at that moment stop forwarding for good, EOF and
 * all, while its sockets stay open: to both ends the other has gone silent.
 * While frozen, new connections are closed at once (the server looks down);
 * `thaw()` forwards new connections again. `admit` can turn away chosen
 * connections (by their order, from 0) by closing them at once.
 */
export class FreezableProxy implements AsyncDisposable {
  readonly port: number;
  #target: number;
  #admit: (index: number) => boolean;
  #listener: Deno.TcpListener;
  #frozen = false;
  #accepted = 0;
  #links = new Set<{ frozen: boolean }>();
  #conns = new Set<Deno.TcpConn>();
  #tasks = new Set<Promise<void>>();
  #closed = Promise.withResolvers<void>();

  constructor(target: number, admit: (index: number) => boolean = () => true) {
    this.#target = target;
    this.#admit = admit;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = this.#listener.addr.port;
    this.#track(this.#accept());
  }

  freeze(): void {
    this.#frozen = true;
    for (const link of this.#links) link.frozen = true;
  }

  thaw(): void {
    this.#frozen = false;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#closed.resolve();
    try {
      this.#listener.close();
    } catch { /* closed */ }
    for (const conn of this.#conns) this.#drop(conn);
    await Promise.all([...this.#tasks]);
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  #drop(conn: Deno.TcpConn): void {
    this.#conns.delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        const index = this.#accepted++;
        if (this.#frozen || !this.#admit(index)) {
          conn.close();
          continue;
        }
        this.#track(this.#link(conn));
      }
    } catch { /* listener closed */ }
  }

  async #link(a: Deno.TcpConn): Promise<void> {
    this.#conns.add(a);
    let b: Deno.TcpConn;
    try {
      b = await Deno.connect({ hostname: "127.0.0.1", port: this.#target });
    } catch {
      return this.#drop(a);
    }
    this.#conns.add(b);
    const link = { frozen: false };
    this.#links.add(link);
    await Promise.all([this.#pump(a, b, link), this.#pump(b, a, link)]);
    this.#links.delete(link);
    this.#drop(a);
    this.#drop(b);
  }

  async #pump(src: Deno.TcpConn, dst: Deno.TcpConn, link: { frozen: boolean }): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await src.read(buf);
        // A frozen link passes on nothing, not even the end, until the proxy closes.
        if (link.frozen) return await this.#closed.promise;
        if (n === null) return await dst.closeWrite();
        await writeAll(dst, buf.subarray(0, n));
      }
    } catch {
      if (!link.frozen) {
        this.#drop(src);
        this.#drop(dst);
      }
    }
  }
}

/** A TCP relay that passes bytes on both ways and keeps a copy of each direction per connection. */
export class RecordingRelay implements AsyncDisposable {
  readonly port: number;
  #listener: Deno.TcpListener;
  #target: number;
  #conns = new Set<Deno.TcpConn>();
  #tasks = new Set<Promise<void>>();
  /** Every direction of every connection, in the order its bytes passed. */
  readonly streams: Uint8Array[][] = [];

  constructor(target: number) {
    this.#target = target;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = this.#listener.addr.port;
    this.#track(this.#accept());
  }

  /** True if `needle` appears in any one direction of any connection. */
  saw(needle: string): boolean {
    return this.streams.some((chunks) => Buffer.concat(chunks).includes(needle, 0, "latin1"));
  }

  /** Bytes seen so far, all directions. */
  get total(): number {
    return this.streams.reduce((n, s) => n + s.reduce((m, c) => m + c.length, 0), 0);
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #accept(): Promise<void> {
    try {
      for await (const a of this.#listener) this.#track(this.#link(a));
    } catch { /* listener closed */ }
  }

  async #link(a: Deno.TcpConn): Promise<void> {
    this.#conns.add(a);
    let b: Deno.TcpConn | undefined;
    try {
      b = await Deno.connect({ hostname: "127.0.0.1", port: this.#target });
      this.#conns.add(b);
      await Promise.all([this.#pump(a, b), this.#pump(b, a)]);
    } catch { /* the server is gone */ }
    this.#close(a);
    if (b) this.#close(b);
  }

  async #pump(src: Deno.TcpConn, dst: Deno.TcpConn): Promise<void> {
    const seen: Uint8Array[] = [];
    this.streams.push(seen);
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await src.read(buf);
        if (n === null) return await dst.closeWrite();
        seen.push(buf.slice(0, n));
        await writeAll(dst, buf.subarray(0, n));
      }
    } catch {
      this.#close(src);
      this.#close(dst);
    }
  }

  #close(conn: Deno.TcpConn): void {
    this.#conns.delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#listener.close();
    } catch { /* closed */ }
    for (const c of [...this.#conns]) this.#close(c);
    await Promise.all([...this.#tasks]);
  }
}

/**
 * A man in the middle that holds a certificate for 127.0.0.1 from a CA the
 * client's trust store knows (a "public" one), but not the server's CA key.
 * To the client's first connection (the one that reads the chain) it shows a
 * chain that ends in the genuine, pinned CA certificate (public knowledge)
 * over a leaf of its own; to every later connection it shows its "public"
 * certificate, and relays the plaintext to the real server.
 */
export class SplitChainMitm implements AsyncDisposable {
  readonly port: number;
  #front: Deno.TcpListener;
  #peekTls: Deno.TlsListener;
  #realTls: Deno.TlsListener;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #seen = 0;
  /** Connections the MITM terminated with its "public" certificate and relayed. */
  relayed = 0;

  constructor(
    target: number,
    peek: { cert: string; key: string },
    real: { cert: string; key: string },
  ) {
    this.#front = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = this.#front.addr.port;
    this.#peekTls = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...peek });
    this.#realTls = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...real });
    this.#track(this.#acceptFront());
    this.#track(this.#acceptReal(target));
    this.#track(this.#acceptPeek());
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #acceptFront(): Promise<void> {
    try {
      for await (const a of this.#front) {
        const inner = this.#seen++ === 0 ? this.#peekTls : this.#realTls;
        this.#track(this.#splice(a, (inner.addr as Deno.NetAddr).port));
      }
    } catch { /* closed */ }
  }

  async #acceptPeek(): Promise<void> {
    try {
      for await (const c of this.#peekTls) {
        this.#conns.add(c);
        c.handshake().catch(() => {}).finally(() => this.#close(c));
      }
    } catch { /* closed */ }
  }

  async #acceptReal(target: number): Promise<void> {
    try {
      for await (const c of this.#realTls) {
        this.#conns.add(c);
        this.#track((async () => {
          try {
            await c.handshake();
            this.relayed++;
            const tcp = await Deno.connect({ hostname: "127.0.0.1", port: target });
            const up = await Deno.startTls(tcp, {
              hostname: "burrow-server",
              caCerts: [suiteCa()],
            });
            this.#conns.add(up);
            await Promise.all([this.#pump(c, up), this.#pump(up, c)]);
          } catch { /* gone */ }
        })());
      }
    } catch { /* closed */ }
  }

  async #splice(a: Deno.TcpConn, port: number): Promise<void> {
    this.#conns.add(a);
    try {
      const b = await Deno.connect({ hostname: "127.0.0.1", port });
      this.#conns.add(b);
      await Promise.all([this.#pump(a, b), this.#pump(b, a)]);
    } catch { /* gone */ }
  }

  async #pump(src: Deno.Conn, dst: Deno.Conn): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await src.read(buf);
        if (n === null) break;
        await writeAll(dst, buf.subarray(0, n));
      }
    } catch { /* reset */ }
    this.#close(src);
    this.#close(dst);
  }

  #close(conn: Deno.Conn): void {
    this.#conns.delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const l of [this.#front, this.#peekTls, this.#realTls]) {
      try {
        l.close();
      } catch { /* closed */ }
    }
    for (const c of [...this.#conns]) this.#close(c);
    await Promise.all([...this.#tasks]);
  }
}

/**
 * A TCP relay on 127.0.0.1 whose upstream connections leave from `source`:
 * a real client dialled through it reaches the server from that address.
 */
export async function sourceRelay(source: string, port: number) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect({ host: "127.0.0.1", port, localAddress: source });
    for (const s of [down, up]) {
      sockets.add(s);
      s.on("error", () => {
        down.destroy();
        up.destroy();
      });
      s.on("close", () => sockets.delete(s));
    }
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
