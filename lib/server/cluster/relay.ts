/**
 * Node-to-node links: one mux session (the transport clients use) from each
 * node to each other node it relays users to, over TLS with the server's
 * identity (plain TCP with `--no-tls`), proven both ways by `relay_auth.ts`.
 * Each relayed user is one stream whose header names the public port and
 * the user's real address.
 *
 * The listening side drops anything that is not a proven node within the
 * first-frame deadline (5 s): a TLS handshake, the mux preamble and the
 * hello stream must all arrive by then.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatHostPort, type HostPort } from "../../util/addr.ts";
import { errorMessage } from "../../util/errors.ts";
import { acceptLoop, closeQuietly, netReason } from "../../transport/net.ts";
import type { Dialer, Incoming, Transport, TransportListener } from "../../transport/transport.ts";
import { TcpDialer } from "../../transport/tcp.ts";
import { TlsDialer } from "../../transport/tls_dialer.ts";
import { MuxSession, type MuxStream } from "../../transport/mux/mod.ts";
import { withDeadline } from "../../protocol/protocol.ts";
import {
  boundTo,
  parseUserHeader,
  type RelayedUser,
  type RelayKeys,
  userHeader,
} from "./relay_auth.ts";

/** The first-frame deadline of the relay port. */
export const RELAY_HELLO_MS = 5_000;

/** What the relay listener hands on: a proven node's user stream. */
export type RelayHandler = (stream: MuxStream, user: RelayedUser, peer: string) => void;

/** What a relay listener is given. */
export interface RelayListenerInit {
  keys: RelayKeys;
  self: string;
  log: Logger;
  handle: RelayHandler;
  /** This node's CA fingerprint (64 hex digits), or undefined without TLS. */
  identity: string | undefined;
}

/** Accepts links from other nodes. */
export class RelayListener {
  readonly addr: HostPort;
  #listener: TransportListener;
  #keys: RelayKeys;
  #self: string;
  #log: Logger;
  #handle: RelayHandler;
  #identity: string | undefined;
  #links = new Set<MuxSession>();
  #pending = new Set<Incoming>();
  #accepting: Promise<void>;

  /** Binds `bind` over `transport` and starts accepting links. */
  static async start(
    transport: Transport,
    bind: HostPort,
    init: RelayListenerInit,
  ): Promise<RelayListener> {
    return new RelayListener(await transport.listen(bind), init);
  }

  private constructor(
    listener: TransportListener,
    init: RelayListenerInit,
  ) {
    this.#listener = listener;
    this.addr = this.#listener.addr;
    this.#keys = init.keys;
    this.#self = init.self;
    this.#log = init.log;
    this.#handle = init.handle;
    this.#identity = init.identity;
    this.#accepting = acceptLoop(
      this.#listener,
      (incoming) => void this.#link(incoming),
      (reason) => this.#log.warn(`relay listener: accept failed: ${reason}`),
    );
  }

  async #link(incoming: Incoming): Promise<void> {
    const from = formatHostPort(incoming.remoteAddr);
    this.#pending.add(incoming);
    let mux: MuxSession | undefined;
    try {
      const proven = await withDeadline(
        (async () => {
          const conn = await incoming.secure();
          mux = new MuxSession(conn, { role: "server", handshakeMs: RELAY_HELLO_MS });
          const first = await mux.accept();
          if (first === null) throw new Error("closed before its hello");
          const hello = await this.#keys.checkHello(first.header, this.#self);
          if (hello === undefined) {
            first.reset("not a proven node");
            throw new Error("its hello is not a valid proof of the cluster secret");
          }
          if (!boundTo(hello, this.#identity)) {
            first.reset("bound to another TLS identity");
            throw new Error(
              `node ${hello.node}'s hello was made over a TLS channel to another certificate ` +
                "(a man in the middle, or a node that trusts another certificate for this address)",
            );
          }
          await first.write(await this.#keys.answer(this.#self, hello.nonce));
          await first.closeWrite();
          return hello.node;
        })(),
        RELAY_HELLO_MS,
        `no proven hello within ${RELAY_HELLO_MS / 1000}s`,
      );
      this.#pending.delete(incoming);
      this.#log.info(`relay link from node ${proven} (${from}) is up`);
      this.#links.add(mux!);
      for await (const stream of mux!.incoming()) {
        const user = parseUserHeader(stream.header);
        if (user === undefined) {
          stream.reset("not a relayed user");
          continue;
        }
        this.#handle(stream, user, proven);
      }
      this.#log.info(`relay link from node ${proven} (${from}) ended`);
    } catch (err) {
      // A dialler's first look at the certificate closes before any hello: not worth a warning.
      const quiet = mux === undefined || /closed before its hello/.test(reason(err));
      const line = `relay: dropped a connection from ${from}: ${reason(err)}`;
      if (quiet) this.#log.debug(line);
      else this.#log.warn(line);
      mux?.close();
      closeQuietly(incoming);
    } finally {
      this.#pending.delete(incoming);
      if (mux) this.#links.delete(mux);
    }
  }

  /** Stops listening and ends every link. */
  async close(): Promise<void> {
    closeQuietly(this.#listener);
    await this.#accepting;
    for (const incoming of this.#pending) closeQuietly(incoming);
    for (const link of this.#links) link.close();
  }
}

/** A proven link to one node. */
interface Link {
  mux: MuxSession;
  advertise: string;
}

/** Dials other nodes, one link each, made on first use and again after it fails. */
export class RelayDialer {
  #keys: RelayKeys;
  #self: string;
  #tls: boolean;
  #log: Logger;
  #links = new Map<string, Promise<Link>>();
  #closed = false;

  constructor(init: { keys: RelayKeys; self: string; tls: boolean; log: Logger }) {
    this.#keys = init.keys;
    this.#self = init.self;
    this.#tls = init.tls;
    this.#log = init.log;
  }

  /** A new stream to node `node` at `advertise` for one user. Rejects when the node cannot be reached. */
  async open(node: string, advertise: string, user: RelayedUser): Promise<MuxStream> {
    const link = await this.#link(node, advertise);
    return link.mux.openStream(userHeader(user));
  }

  /** Ends the link to `node`, if any (it left the cluster). */
  drop(node: string): void {
    const link = this.#links.get(node);
    this.#links.delete(node);
    link?.then((l) => l.mux.close(), () => {});
  }

  /** Ends every link. */
  close(): void {
    this.#closed = true;
    for (const node of [...this.#links.keys()]) this.drop(node);
  }

  #link(node: string, advertise: string): Promise<Link> {
    const known = this.#links.get(node);
    if (known) {
      return known.then((l) => {
        if (l.advertise === advertise && !ended(l.mux)) return l;
        if (this.#links.get(node) === known) this.#links.delete(node);
        l.mux.close();
        return this.#link(node, advertise);
      });
    }
    if (this.#closed) return Promise.reject(new Error("the relay is closed"));
    const made = this.#dial(node, advertise);
    this.#links.set(node, made);
    made.then((l) => {
      l.mux.closed.then(() => {
        if (this.#links.get(node) === made) this.#links.delete(node);
      });
    }, () => {
      if (this.#links.get(node) === made) this.#links.delete(node);
    });
    return made;
  }

  async #dial(node: string, advertise: string): Promise<Link> {
    const at = parseAdvertise(advertise);
    const dialer: Dialer = this.#tls
      ? new TlsDialer(at, { enabled: true }, quietTrust(this.#log))
      : new TcpDialer(at);
    const conn = await dialer.dial(RELAY_HELLO_MS, true);
    const mux = new MuxSession(conn, { role: "client", handshakeMs: RELAY_HELLO_MS });
    try {
      const ca = dialer instanceof TlsDialer ? dialer.binding ?? "public" : "none";
      const { header, nonce } = await this.#keys.hello(this.#self, node, ca);
      const first = mux.openStream(header);
      const line = await withDeadline(
        readLine(first),
        RELAY_HELLO_MS,
        `node ${node} at ${advertise} did not answer its hello within ${RELAY_HELLO_MS / 1000}s`,
      );
      if (!(await this.#keys.checkAnswer(line, node, nonce))) {
        throw new Error(`node ${node} at ${advertise} did not prove the cluster secret`);
      }
      first.close();
      this.#log.info(`relay link to node ${node} (${advertise}) is up`);
      mux.closed.then((r) => {
        const why = r.kind === "failed" ? `: ${errorMessage(r.error)}` : "";
        this.#log.info(`relay link to node ${node} (${advertise}) ended${why}`);
      });
      return { mux, advertise };
    } catch (err) {
      mux.close();
      throw new Error(
        `relay link to node ${node} at ${advertise} failed: ${reason(err)} ` +
          `(is cluster.secret the same on every node?)`,
      );
    }
  }
}

/**
 * The log for the TLS dialler: a node trusts whatever certificate another
 * node shows (the secret's proof authenticates it), so the dialler's
 * trust-on-first-use warning is only worth a debug line.
 */
function quietTrust(log: Logger): Logger {
  return new Proxy(log, {
    get(target, prop, receiver) {
      if (prop === "warn" || prop === "warning") return target.debug.bind(target);
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

function ended(mux: MuxSession): boolean {
  return !mux.canOpen;
}

/** Reads one line (at most 4 KiB) from a stream. */
async function readLine(stream: MuxStream): Promise<Uint8Array> {
  const buf = new Uint8Array(4096);
  let have = 0;
  while (have < buf.length) {
    const n = await stream.read(buf.subarray(have));
    if (n === null) break;
    have += n;
    const nl = buf.subarray(0, have).indexOf(10);
    if (nl >= 0) return buf.slice(0, nl);
  }
  throw new Error("the peer closed the hello stream without an answer (wrong cluster secret?)");
}

function parseAdvertise(text: string): HostPort {
  const at = text.lastIndexOf(":");
  const hostname = text.slice(0, at).replace(/^\[|\]$/g, "");
  return { hostname, port: Number(text.slice(at + 1)) };
}

function reason(err: unknown): string {
  return err instanceof Error && !(err instanceof Deno.errors.ConnectionReset)
    ? errorMessage(err)
    : netReason(err);
}
