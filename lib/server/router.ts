/**
 * The server's connection routing, as rathole's `handle_connection`: every
 * new connection is counted (`handshakes.ts`), secured by the transport,
 * challenged, and its first message read, all under one deadline; then it
 * goes to one small function per kind: a `hello` becomes a control session,
 * a `work_hello` becomes a mux session of its session's, a `query` is answered.
 * Who may get in is `admission.ts`'s decision.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatHostPort } from "../util/addr.ts";
import { errorMessage, ProtocolError, type WireRefusalCode } from "../util/errors.ts";
import type { RareLog } from "../util/rare_log.ts";
import { newId, newNonce, Secret } from "../util/secret.ts";
import { VERSION } from "../util/version.ts";
import { closeQuietly, netReason } from "../transport/net.ts";
import { type Conn, type Incoming, TransportMismatchError } from "../transport/transport.ts";
import {
  FrameReader,
  FrameWriter,
  HANDSHAKE_TIMEOUT_MS,
  type Hello,
  parseFirstMessage,
  PROTOCOL_VERSION,
  type Query,
  type ServerMessage,
  TlsRecordError,
  versionMismatch,
  withDeadline,
  type WorkHello,
} from "../protocol/protocol.ts";
import type { ServerMonitor } from "../dashboard/monitor.ts";
import type { ServiceInfo } from "../protocol/services.ts";
import { type Admission, isRefusal } from "./admission.ts";
import { freePortsAnswer, queryPorts, servicesAnswer } from "./answers.ts";
import type { Handshakes } from "./handshakes.ts";
import type { Registry } from "./registry.ts";
import { ServerSession, type SessionServices } from "./session.ts";
import type { Credentials } from "./users.ts";

/** What the router needs of the server. */
export interface RouterDeps {
  log: Logger;
  rare: RareLog;
  monitor: Pick<ServerMonitor, "refused" | "groupOnline">;
  handshakes: Handshakes;
  admission: Admission;
  registry: Registry<ServerSession>;
  /** Live sessions by id; the router adds them, each removes itself as it ends. */
  sessions: Map<string, ServerSession>;
  /** What every new session is given. */
  sessionServices: SessionServices;
  credentials(): Credentials | undefined;
  services(): ServiceInfo[];
  closing(): boolean;
  /** How long a registration waits for an unreachable cluster store. */
  clusterWaitMs?: number;
}

/** A connection past its handshake: secured, challenged, its first frame read. */
interface Greeted {
  conn: Conn;
  reader: FrameReader;
  writer: FrameWriter<ServerMessage>;
  nonce: string;
  first: unknown;
}

/** The token of sessions on a server without authentication (never checked). */
const NO_TOKEN = new Secret("no-auth");

/** Routes every new connection of one server. */
export class Router {
  #d: RouterDeps;

  constructor(deps: RouterDeps) {
    this.#d = deps;
  }

  /** Handles one accepted connection for its whole life. */
  async handle(incoming: Incoming): Promise<void> {
    const from = formatHostPort(incoming.remoteAddr);
    const source = this.#d.handshakes.enter(incoming, from);
    if (source === undefined) return;
    try {
      const greeted = await withDeadline(
        this.#greet(incoming),
        HANDSHAKE_TIMEOUT_MS,
        `no hello within ${HANDSHAKE_TIMEOUT_MS / 1000}s`,
      );
      const { conn, writer, first } = greeted;
      const version = (first as { version?: unknown }).version;
      if (typeof version === "number" && version !== PROTOCOL_VERSION) {
        const message = versionMismatch(version, PROTOCOL_VERSION);
        this.#d.log.warn(`refused ${from}: ${message}`);
        this.#d.monitor.refused("version_mismatch", message, { addr: from });
        await writer.send({ type: "refused", code: "version_mismatch", message });
        return closeQuietly(conn);
      }
      const hello = parseFirstMessage(first);
      switch (hello.type) {
        case "hello":
          return await this.#control(incoming, greeted, hello, source, from);
        case "work_hello":
          return await this.#work(incoming, greeted, hello, source, from);
        case "query":
          // Still a handshake: counted against the cap, closed on shutdown, and
          // bounded in time, so a peer that never reads cannot hold it open.
          return await withDeadline(
            this.#query(greeted, hello, source, from),
            HANDSHAKE_TIMEOUT_MS,
            `the answer was not taken within ${HANDSHAKE_TIMEOUT_MS / 1000}s`,
          );
      }
    } catch (err) {
      if (err instanceof TlsRecordError) {
        this.#d.rare.warn(
          "tls-client",
          `a client at ${from} speaks TLS, but this server runs with --no-tls: ` +
            `set tls: false in its group file, or turn TLS on here`,
        );
      }
      if (err instanceof TransportMismatchError) {
        this.#d.rare.warn("plaintext", `a client at ${from} ${err.hint}`);
      }
      const why = err instanceof ProtocolError ? errorMessage(err) : netReason(err);
      if (!this.#d.closing()) this.#d.log.debug(`closed connection from ${from}: ${why}`);
      closeQuietly(incoming);
    } finally {
      this.#d.handshakes.leave(incoming);
    }
  }

  /** The transport's handshake, the challenge, the preamble and the first frame. */
  async #greet(incoming: Incoming): Promise<Greeted> {
    const conn = await incoming.secure();
    const reader = new FrameReader(conn);
    const writer = new FrameWriter<ServerMessage>(conn);
    const nonce = newNonce();
    await writer.send({ type: "challenge", version: PROTOCOL_VERSION, server: VERSION, nonce });
    await reader.readPreamble();
    const first = await reader.read();
    if (first === null) throw new ProtocolError("closed before saying hello");
    return { conn, reader, writer, nonce, first };
  }

  /** Sends a refusal on a connection that ends with it, logged and counted. */
  async #refuse(
    { conn, writer }: Greeted,
    code: WireRefusalCode,
    message: string,
    where: { addr: string; group: string },
  ): Promise<void> {
    this.#d.log.info(`refused group ${where.group} from ${where.addr}: ${message}`);
    this.#d.monitor.refused(code, message, where);
    await writer.send({ type: "refused", code, message }).catch(() => {});
    closeQuietly(conn);
  }

  /** A `hello`: log in, be admitted, and run the control session. */
  async #control(
    incoming: Incoming,
    greeted: Greeted,
    hello: Hello,
    source: string,
    from: string,
  ): Promise<void> {
    const where = { addr: from, group: hello.group };
    const login = await this.#d.admission.login(source, from, greeted.nonce, hello);
    if (isRefusal(login)) return this.#refuse(greeted, login.code, login.message, where);
    this.#d.handshakes.leave(incoming);
    const admitted = await this.#d.admission.register(hello, from, login.proven);
    if (isRefusal(admitted)) return this.#refuse(greeted, admitted.code, admitted.message, where);
    const { credential } = admitted;
    const id = newId();
    const cluster = this.#d.sessionServices.cluster;
    if (cluster && !(hello.shared === true && this.#d.registry.group(hello.group)?.shared)) {
      const who = { id, group: hello.group, runId: hello.runId, ended: false };
      const claimed = await cluster.claimGroup(who, this.#d.clusterWaitMs ?? 8000);
      if (claimed === "retry") { // not a refusal: the client tries again
        this.#d.log.warn(`group ${hello.group} from ${from}: the cluster store is unreachable`);
        return closeQuietly(greeted.conn);
      }
      if (claimed) return this.#refuse(greeted, claimed.code, claimed.message, where);
    }
    const session = new ServerSession(this.#d.sessionServices, {
      id,
      group: hello.group,
      runId: hello.runId,
      clientVersion: hello.client,
      shared: hello.shared === true,
      link: { conn: greeted.conn, reader: greeted.reader, writer: greeted.writer },
      token: credential?.token ?? NO_TOKEN,
      ...(credential?.quota === undefined ? {} : { quota: credential.quota }),
      onEnded: (ended) => {
        if (this.#d.sessions.get(ended.id) === ended) this.#d.sessions.delete(ended.id);
        cluster?.release(ended);
      },
    });
    this.#d.registry.addGroup(hello.group, session, hello.shared === true);
    this.#d.sessions.set(session.id, session);
    this.#d.monitor.groupOnline(session);
    this.#d.log.info(`group ${hello.group} connected from ${from} (burrow ${hello.client})`);
    try {
      await session.run();
    } catch (err) {
      session.end(netReason(err));
    }
  }

  /** A `work_hello`: proven, it carries a mux session for its session's users. */
  async #work(
    incoming: Incoming,
    { conn, reader, nonce }: Greeted,
    hello: WorkHello,
    source: string,
    from: string,
  ): Promise<void> {
    const session = this.#d.sessions.get(hello.session);
    if (session === undefined) {
      // Not a guess at any token (no proof was checked): a client's pooled
      // work connections routinely arrive just after its session ended.
      this.#d.log.debug(`closed work connection from ${from}: unknown session`);
      return closeQuietly(conn);
    }
    if (!(await this.#d.admission.work(source, from, nonce, hello, session.token))) {
      this.#d.log.debug(`closed work connection from ${from}: wrong proof`);
      return closeQuietly(conn);
    }
    this.#d.handshakes.leave(incoming);
    session.work.add(conn, reader);
  }

  /** A `query`: answered (services or free ports), then the connection is closed. */
  async #query(
    { conn, writer, nonce }: Greeted,
    query: Query,
    source: string,
    from: string,
  ): Promise<void> {
    const what = query.what;
    try {
      const decision = await this.#d.admission.query(source, from, nonce, query);
      if (isRefusal(decision)) {
        const { code, message } = decision;
        this.#d.log.info(`refused a ${what} query from ${from}: ${message}`);
        this.#d.monitor.refused(code, `refused a ${what} query: ${message}`, { addr: from });
        return await writer.send({ type: "refused", code, message });
      }
      this.#d.log.debug(`answered a ${what} query from ${from}`);
      if (what === "free_ports") {
        const within = queryPorts(decision.credential);
        return await writer.send(freePortsAnswer(this.#d.registry, 0, within));
      }
      await writer.send(servicesAnswer(this.#d.services(), query.group, this.#d.credentials()));
    } finally {
      closeQuietly(conn);
    }
  }
}
