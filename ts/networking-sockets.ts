import { EventEmitter } from 'node:events';

import { configProblem, configValues, toConfig, type Config } from './config';
import { ConnectionState, EResult, SendFlags } from './generated';
import { Identity } from './identity';
import type { RealTimeStatus } from './networking-messages';
import { native, type NativeConnInfo, type NativeSockets, type NativeSocketsEvent } from './native';
import { emitIsolated } from './dispatch';
import { batchLeft, toConnectionMessages, type NetworkingConnectionMessage } from './receive-batch';
import { securityOptions, type SecurityCreateOptions } from './security';
import { p2pSetup, splitP2pConfig, startSignaling, type P2pCreateOptions, type P2pStringConfig, type Signaling } from './p2p';

export type { NetworkingConnectionMessage } from './receive-batch';

/** Options of {@link NetworkingSockets.create}. */
export interface SocketsCreateOptions extends SecurityCreateOptions, P2pCreateOptions {
  /** Configuration for every connection (per listen socket or connection it may be
   * overridden); unknown keys are a TypeError, bad values a RangeError. Steam's P2P string
   * keys (`p2pStunServerList`, ...) are accepted here too, as for `NetworkingMessages`. */
  config?: Partial<Config> & P2pStringConfig;
}

/** Options of {@link NetworkingSockets.createListenSocketIP}. */
export interface ListenOptions {
  /** Configuration for the connections accepted through this listen socket. */
  config?: Partial<Config>;
}

/** Options of {@link NetworkingSockets.connectByIPAddress}. */
export interface ConnectOptions {
  /** Configuration for this connection. */
  config?: Partial<Config>;
  /** The connection's user data from the start (Steam's `ConnectionUserData` config
   * value): an integer within ±2^53. */
  userData?: number;
  /**
   * Steam's `SymmetricConnect`: a connect to a peer that connects to us at the same time
   * makes one connection, not two (both sides must set it).
   */
  symmetricConnect?: boolean;
}

/** A connection's details (Steam's `SteamNetConnectionInfo_t`). */
export interface SocketConnectionInfo {
  /** Who the peer is: what its certificate proved, or its `ip:` address. */
  identityRemote: Identity;
  /** The application's user data (-1 until set). */
  userData: number;
  /** The listen socket it came through; 0 for a connection we dialled. */
  listenSocket: number;
  /** The peer's address, `host:port`. */
  remoteAddress: string;
  /** Steam's state. */
  state: ConnectionState;
  /** Why it ended (`ConnectionEnd` values); 0 while live. */
  endReason: number;
  /** The end's detail. */
  endDebug: string;
  /** A description for logs. */
  connectionDescription: string;
  /** The application's name for it. */
  name: string;
  /** Steam's `k_nSteamNetworkingConnectionInfoFlags_*` bits. */
  flags: number;
}

/** Steam's `SteamNetConnectionRealTimeStatus_t`, the same shape for both interfaces. */
export type ConnectionRealTimeStatus = RealTimeStatus;

/** The `connectionStatusChanged` event (Steam's `SteamNetConnectionStatusChangedCallback_t`). */
export interface ConnectionStatusChanged {
  conn: number;
  info: SocketConnectionInfo;
  oldState: ConnectionState;
}

/** One message of {@link NetworkingSockets.sendMessages}. */
export interface OutgoingConnectionMessage {
  conn: number;
  data: Uint8Array | string;
  /** Default `SendFlags.Unreliable`. */
  sendFlags?: number;
  /** Default 0. */
  lane?: number;
  /** Echoed in the result, for the application's bookkeeping (Steam's `m_nUserData`). */
  userData?: number;
}

/** What a send returns: `result` and, when `OK`, the message's number on its lane. */
export interface SendResult {
  result: EResult;
  messageNumber: bigint;
  /** The `userData` given with the message (batch sends). */
  userData?: number;
}

/** Events of a {@link NetworkingSockets} instance. */
export interface NetworkingSocketsEvents {
  connectionStatusChanged: [e: ConnectionStatusChanged];
  /**
   * Messages wait: posted when a connection's queue goes from empty to non-empty, and again
   * (on a later tick) after every receive call that leaves messages behind, so a handler that
   * reads a bounded batch per event still drains everything. A re-post after
   * `receiveMessagesOnPollGroup` names the group with `conn` 0.
   */
  messages: [e: { conn: number; pollGroup: number }];
  /** An exception thrown by one of this instance's listeners (uncaught if none listens). */
  error: [err: unknown];
  close: [];
}

const MAX_MESSAGE_SIZE = 512 * 1024;

function handleArg(name: string, h: unknown): number {
  if (typeof h !== 'number' || !Number.isInteger(h)) {
    throw new TypeError(`${name} must be an integer handle, got ${typeof h === 'number' ? h : typeof h}`);
  }
  // Out-of-range numbers name no handle: Steam's "invalid handle" results, not an error.
  return h >= 0 && h <= 0xffffffff ? h : 0;
}

function bytesOf(data: unknown): Uint8Array | undefined {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data;
  return undefined;
}

function parseAddress(text: string): { address: string; port: number } {
  const cut = text.lastIndexOf(':');
  return { address: text.slice(0, cut).replace(/^\[|\]$/g, ''), port: Number(text.slice(cut + 1)) };
}

function info(i: NativeConnInfo): SocketConnectionInfo {
  const identityRemote = Identity.parse(i.identityRemote);
  return {
    identityRemote,
    userData: i.userData,
    listenSocket: i.listenSocket,
    remoteAddress: i.remoteAddress,
    state: i.state as ConnectionState,
    endReason: i.endReason,
    endDebug: i.endDebug,
    connectionDescription: `${i.name !== '' ? `${i.name} ` : ''}${identityRemote.toString()} at ${i.remoteAddress}`,
    name: i.name,
    flags: i.flags,
  };
}

function sendResult(r: number, userData?: number): SendResult {
  const out: SendResult =
    r > 0 ? { result: EResult.OK, messageNumber: BigInt(r) } : { result: -r as EResult, messageNumber: 0n };
  if (userData !== undefined) out.userData = userData;
  return out;
}

/**
 * Steam's ISteamNetworkingSockets: the connection-oriented API on the same core as
 * {@link NetworkingMessages}. Listen sockets accept connections (which wait in `Connecting`
 * until {@link NetworkingSockets.acceptConnection}), connections carry messages on lanes with
 * no header of ours, so a stock GameNetworkingSockets program connects to it and it connects
 * to one. Handles are Steam's integers; a closed handle is just invalid.
 */
export class NetworkingSockets extends EventEmitter<NetworkingSocketsEvents> {
  readonly #native: NativeSockets;
  /** `#native.send` as a plain function bound to the instance: the per-call hot path (binding/src/fast_send.rs). */
  readonly #send: (conn: number, data: Uint8Array, flags: number, lane: number) => number;
  /** Sources to re-announce (a receive left messages there): `c<conn>` or `g<group>`. */
  readonly #rearm = new Map<string, { conn: number; pollGroup: number }>();
  #rearmScheduled = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** P2P's signaling, when configured (`ts/p2p.ts`). */
  #p2p: { signaling: Signaling; send: (to: string, blob: Uint8Array) => void } | undefined;

  private constructor(n: NativeSockets) {
    super();
    this.#native = n;
    this.#send = n.sendFunction();
  }

  /** Starts an instance; it opens sockets as listen sockets and connections need them. */
  static async create(options: SocketsCreateOptions = {}): Promise<NetworkingSockets> {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const security = securityOptions(options);
    const { numeric, strings } = splitP2pConfig(options.config);
    const values = configValues(numeric);
    configProblem(native.checkConfig(values));
    const p2p = await p2pSetup(options, strings, security);
    let sockets: NetworkingSockets | undefined;
    const onEvents = (events: NativeSocketsEvent[]): void => {
      if (sockets !== undefined) sockets.#dispatch(events);
    };
    let n: NativeSockets;
    try {
      n = native.NativeSockets.create(values, security, onEvents);
    } catch (e) {
      if ((e as { code?: string }).code === 'InvalidArg') throw new TypeError((e as Error).message);
      throw e;
    }
    sockets = new NetworkingSockets(n);
    if (p2p !== null) {
      n.enableP2P(p2p.native);
      sockets.#p2p = await startSignaling(p2p, n, security);
    }
    return sockets;
  }

  /** Opens a listen socket on `localAddress` (`'host:port'`, port 0 picks one); its handle. */
  createListenSocketIP(localAddress: string, options: ListenOptions = {}): number {
    this.#assertOpen();
    if (typeof localAddress !== 'string') throw new TypeError('localAddress must be a "host:port" string');
    const values = configValues(options.config);
    configProblem(native.checkConfig(values));
    const [h] = this.#native.createListenSocketIp(localAddress, values);
    return Number(h);
  }

  /** Closes a listen socket and every connection accepted through it. */
  closeListenSocket(listenSocket: number): boolean {
    this.#assertOpen();
    return this.#native.closeListenSocket(handleArg('listenSocket', listenSocket));
  }

  /** The address a listen socket is bound to, or null for a bad handle. */
  getListenSocketAddress(listenSocket: number): { address: string; port: number } | null {
    this.#assertOpen();
    const a = this.#native.listenSocketAddress(handleArg('listenSocket', listenSocket));
    return a === null || a === undefined ? null : parseAddress(a);
  }

  /** Dials `address` (`'host:port'`, an IP address); the connection's handle (0 when the
   * connection table is full). Its progress comes as `connectionStatusChanged` events. */
  connectByIPAddress(address: string, options: ConnectOptions = {}): number {
    this.#assertOpen();
    if (typeof address !== 'string') throw new TypeError('address must be a "host:port" string');
    const { values, u } = connectOptions(options);
    try {
      return this.#native.connectByIpAddress(address, values, u, options.symmetricConnect === true);
    } catch (e) {
      if ((e as { code?: string }).code === 'InvalidArg') throw new TypeError((e as Error).message);
      throw e;
    }
  }

  /**
   * A P2P listen socket (Steam's `CreateListenSocketP2P`): peers reach it with
   * {@link NetworkingSockets.connectP2P} to our identity and `virtualPort`, found through
   * signaling, hole-punched or relayed. Its connections wait in `Connecting` for
   * {@link NetworkingSockets.acceptConnection}, as on an IP listen socket. Needs P2P
   * (`signaling` at create); one listen socket per virtual port.
   */
  createListenSocketP2P(virtualPort: number, options: ListenOptions = {}): number {
    this.#assertOpen();
    const vport = virtualPortArg(virtualPort);
    const values = configValues(options.config);
    configProblem(native.checkConfig(values));
    return this.#native.createListenSocketP2P(vport, values);
  }

  /**
   * Dials the peer known as `identity` at its P2P listen socket on `virtualPort` (Steam's
   * `ConnectP2P`): signaling finds it, ICE picks a path (direct, hole-punched, or relayed
   * through TURN), and the connection runs on it. The handle (0 when the tables are full);
   * progress comes as `connectionStatusChanged` events, failures with Steam's end reasons
   * (see docs/P2P.md). `getConnectionInfo` says `FindingRoute` while ICE looks, then the
   * path's address and the `Relayed` / `Fast` flags. One P2P connection per peer at a time.
   */
  connectP2P(identity: Identity | string, virtualPort: number, options: ConnectOptions = {}): number {
    this.#assertOpen();
    const peer = identity instanceof Identity ? identity : Identity.parse(identity);
    const vport = virtualPortArg(virtualPort);
    const { values, u } = connectOptions(options);
    try {
      return this.#native.connectP2P(peer.toString(), vport, values, u, options.symmetricConnect === true);
    } catch (e) {
      if ((e as { code?: string }).code === 'InvalidArg') throw new TypeError((e as Error).message);
      throw new Error(`netmessages: connectP2P: ${(e as Error).message}`);
    }
  }

  /** Accepts a connection waiting on a listen socket: `OK`, `InvalidParam` (bad handle) or
   * `InvalidState` (not waiting). */
  acceptConnection(conn: number): EResult {
    if (this.#closed) return EResult.InvalidState;
    return this.#native.acceptConnection(handleArg('conn', conn)) as EResult;
  }

  /**
   * Closes a connection; the peer gets `reason` (an application code, 1000-2999; 0 for the
   * generic one) and `debug`. With `enableLinger`, reliable data still queued is delivered
   * first. The handle is invalid afterwards (a `connectionStatusChanged` to `None` is posted).
   */
  closeConnection(conn: number, reason = 0, debug = '', enableLinger = false): boolean {
    if (this.#closed) return false;
    if (typeof reason !== 'number' || !Number.isInteger(reason)) throw new TypeError('reason must be an integer');
    if (typeof debug !== 'string') throw new TypeError('debug must be a string');
    return this.#native.closeConnection(handleArg('conn', conn), reason, debug, enableLinger === true);
  }

  /** A connection's details, or null for a bad handle. */
  getConnectionInfo(conn: number): SocketConnectionInfo | null {
    this.#assertOpen();
    const i = this.#native.connectionInfo(handleArg('conn', conn));
    return i === null || i === undefined ? null : info(i);
  }

  /** A connection's real-time figures: `result` `OK` with `status`, or `NoConnection`. */
  getConnectionRealTimeStatus(conn: number): { result: EResult; status: ConnectionRealTimeStatus | null } {
    this.#assertOpen();
    const s = this.#native.realTimeStatus(handleArg('conn', conn));
    if (s === null || s === undefined) return { result: EResult.NoConnection, status: null };
    return {
      result: EResult.OK,
      status: {
        state: s.state as ConnectionState,
        ping: s.pingMs === null || s.pingMs === undefined ? -1 : Math.round(s.pingMs),
        connectionQualityLocal: s.qualityLocal,
        connectionQualityRemote: s.qualityRemote,
        outPacketsPerSec: s.outPacketsPerSec,
        outBytesPerSec: s.outBytesPerSec,
        inPacketsPerSec: s.inPacketsPerSec,
        inBytesPerSec: s.inBytesPerSec,
        sendRateBytesPerSecond: s.sendRate,
        pendingUnreliable: s.pendingUnreliable,
        pendingReliable: s.pendingReliable,
        sentUnackedReliable: s.sentUnackedReliable,
        queueTime: s.queueTimeUs,
      },
    };
  }

  /** A human-readable status of a connection (Steam's `GetDetailedConnectionStatus`), or
   * null for a bad handle. */
  getDetailedConnectionStatus(conn: number): string | null {
    const i = this.getConnectionInfo(conn);
    const { status } = this.getConnectionRealTimeStatus(conn);
    if (i === null || status === null) return null;
    const lines = [
      `Connection ${conn}: ${i.connectionDescription}`,
      `  state ${ConnectionState[i.state] ?? i.state}${i.endReason !== 0 ? `, end ${i.endReason} (${i.endDebug})` : ''}`,
      `  ping ${status.ping} ms, quality local ${status.connectionQualityLocal} remote ${status.connectionQualityRemote}`,
      `  out ${status.outPacketsPerSec.toFixed(1)} pkt/s ${status.outBytesPerSec.toFixed(0)} B/s, in ${status.inPacketsPerSec.toFixed(1)} pkt/s ${status.inBytesPerSec.toFixed(0)} B/s`,
      `  send rate ${status.sendRateBytesPerSecond} B/s, pending reliable ${status.pendingReliable} B unreliable ${status.pendingUnreliable} B, unacked ${status.sentUnackedReliable} B, queue time ${status.queueTime} µs`,
    ];
    return lines.join('\n');
  }

  /** Sets a connection's user data (an integer within ±2^53); false for a bad handle. */
  setConnectionUserData(conn: number, userData: number): boolean {
    this.#assertOpen();
    if (typeof userData !== 'number' || !Number.isSafeInteger(userData)) {
      throw new TypeError('userData must be a safe integer');
    }
    return this.#native.setUserData(handleArg('conn', conn), userData);
  }

  /** A connection's user data; -1 for a bad handle (as Steam). */
  getConnectionUserData(conn: number): number {
    this.#assertOpen();
    return this.#native.userData(handleArg('conn', conn));
  }

  /** Names a connection (for logs and its description); false for a bad handle. */
  setConnectionName(conn: number, name: string): boolean {
    this.#assertOpen();
    if (typeof name !== 'string') throw new TypeError('name must be a string');
    return this.#native.setName(handleArg('conn', conn), name);
  }

  /** A connection's name, or null for a bad handle. */
  getConnectionName(conn: number): string | null {
    this.#assertOpen();
    return this.#native.name(handleArg('conn', conn)) ?? null;
  }

  /** Sends what Nagle holds on a connection now. */
  flushMessagesOnConnection(conn: number): EResult {
    if (this.#closed) return EResult.InvalidState;
    return this.#native.flush(handleArg('conn', conn)) as EResult;
  }

  /**
   * Steam's `ConfigureConnectionLanes`: lane `i` gets `priorities[i]` (lower goes first) and
   * `weights[i]` (1-65535: the share among lanes of one priority). A connection starts with
   * one lane; the number of lanes may grow, never shrink.
   */
  configureConnectionLanes(conn: number, priorities: readonly number[], weights?: readonly number[]): EResult {
    if (this.#closed) return EResult.InvalidState;
    if (!Array.isArray(priorities)) throw new TypeError('priorities must be an array');
    const w = weights ?? priorities.map(() => 1);
    if (!Array.isArray(w)) throw new TypeError('weights must be an array');
    if (priorities.some((p) => !Number.isInteger(p) || p < -(2 ** 31) || p >= 2 ** 31)) return EResult.InvalidParam;
    if (w.some((x) => !Number.isInteger(x) || x < 1 || x > 0xffff)) return EResult.InvalidParam;
    return this.#native.configureLanes(handleArg('conn', conn), Int32Array.from(priorities), Uint16Array.from(w)) as EResult;
  }

  /** Queues a message on a connection. */
  sendMessageToConnection(conn: number, data: Uint8Array | string, sendFlags: number = SendFlags.Unreliable, lane = 0): SendResult {
    if (this.#closed) return { result: EResult.InvalidState, messageNumber: 0n };
    const bytes = bytesOf(data);
    if (bytes === undefined || bytes.byteLength > MAX_MESSAGE_SIZE) return { result: EResult.InvalidParam, messageNumber: 0n };
    if (!Number.isInteger(sendFlags) || sendFlags < 0 || sendFlags > 0xffff) return { result: EResult.InvalidParam, messageNumber: 0n };
    if (!Number.isInteger(lane) || lane < 0 || lane > 0xffff) return { result: EResult.InvalidParam, messageNumber: 0n };
    return sendResult(this.#send(handleArg('conn', conn), bytes, sendFlags, lane));
  }

  /** Queues many messages in one native call (Steam's `SendMessages`); one result each, in
   * order. A bad message gets `InvalidParam` and does not stop the others. */
  sendMessages(messages: ReadonlyArray<OutgoingConnectionMessage>): SendResult[] {
    if (!Array.isArray(messages)) throw new TypeError('messages must be an array');
    const results = new Array<SendResult>(messages.length);
    if (this.#closed) return results.fill({ result: EResult.InvalidState, messageNumber: 0n });
    const conns: number[] = [];
    const chunks: Uint8Array[] = [];
    const sizes: number[] = [];
    const flags: number[] = [];
    const lanes: number[] = [];
    const slots: number[] = [];
    messages.forEach((m, i) => {
      const bytes = m !== null && typeof m === 'object' ? bytesOf(m.data) : undefined;
      const f = m?.sendFlags ?? SendFlags.Unreliable;
      const lane = m?.lane ?? 0;
      if (
        bytes === undefined ||
        bytes.byteLength > MAX_MESSAGE_SIZE ||
        typeof m.conn !== 'number' ||
        !Number.isInteger(m.conn) ||
        !Number.isInteger(f) ||
        f < 0 ||
        f > 0xffff ||
        !Number.isInteger(lane) ||
        lane < 0 ||
        lane > 0xffff
      ) {
        results[i] = sendResult(-EResult.InvalidParam, m?.userData);
        return;
      }
      conns.push(m.conn >= 0 && m.conn <= 0xffffffff ? m.conn : 0);
      chunks.push(bytes);
      sizes.push(bytes.byteLength);
      flags.push(f);
      lanes.push(lane);
      slots.push(i);
    });
    if (slots.length > 0) {
      const sent = this.#native.sendBatch(
        Uint32Array.from(conns),
        Buffer.concat(chunks),
        Uint32Array.from(sizes),
        Uint32Array.from(flags),
        Uint16Array.from(lanes),
      );
      slots.forEach((i, k) => {
        results[i] = sendResult(sent[k] ?? -EResult.Fail, messages[i]?.userData);
      });
    }
    return results;
  }

  /** Takes up to `maxMessages` messages waiting on a connection (none for a bad handle). */
  receiveMessagesOnConnection(conn: number, maxMessages = 64): NetworkingConnectionMessage[] {
    this.#assertOpen();
    const h = handleArg('conn', conn);
    const batch = this.#native.receive(h, maxCount(maxMessages));
    if (batch !== null && batchLeft(batch) > 0) this.#scheduleRearm(`c${h}`, { conn: h, pollGroup: 0 });
    return toConnectionMessages(batch);
  }

  /** A new poll group: one receive order across the connections put in it. */
  createPollGroup(): number {
    this.#assertOpen();
    return this.#native.createPollGroup();
  }

  /** Destroys a poll group; its connections' messages stay on them. */
  destroyPollGroup(pollGroup: number): boolean {
    this.#assertOpen();
    return this.#native.destroyPollGroup(handleArg('pollGroup', pollGroup));
  }

  /** Puts a connection in a poll group (0: in none), with the messages already waiting on it. */
  setConnectionPollGroup(conn: number, pollGroup: number): boolean {
    this.#assertOpen();
    return this.#native.setConnectionPollGroup(handleArg('conn', conn), handleArg('pollGroup', pollGroup));
  }

  /** Takes up to `maxMessages` messages waiting on a poll group's connections, oldest first. */
  receiveMessagesOnPollGroup(pollGroup: number, maxMessages = 64): NetworkingConnectionMessage[] {
    this.#assertOpen();
    const g = handleArg('pollGroup', pollGroup);
    const batch = this.#native.receiveOnPollGroup(g, maxCount(maxMessages));
    if (batch !== null && batchLeft(batch) > 0) this.#scheduleRearm(`g${g}`, { conn: 0, pollGroup: g });
    return toConnectionMessages(batch);
  }

  /** Two connections of this instance connected to each other over loopback sockets, ready
   * on return (Steam's `CreateSocketPair`); each knows the other by its loopback address. */
  createSocketPair(): [number, number] | null {
    this.#assertOpen();
    const pair = this.#native.createSocketPair();
    return pair === null || pair === undefined ? null : [pair[0] as number, pair[1] as number];
  }

  /**
   * Messages as an async iterator, from a poll group (`{ pollGroup }`) or a connection
   * (`{ conn }`); ends when the instance closes, or with an `AbortError` on `signal`.
   */
  async *messages(
    source: { conn: number } | { pollGroup: number },
    options: { signal?: AbortSignal } = {},
  ): AsyncIterableIterator<NetworkingConnectionMessage> {
    const byGroup = 'pollGroup' in source;
    const h = byGroup ? handleArg('pollGroup', source.pollGroup) : handleArg('conn', source.conn);
    const signal = options.signal;
    let wake: (() => void) | undefined;
    const onMessages = (e: { conn: number; pollGroup: number }): void => {
      if ((byGroup ? e.pollGroup : e.conn) === h) wake?.();
    };
    const onWake = (): void => wake?.();
    this.on('messages', onMessages);
    this.on('close', onWake);
    signal?.addEventListener('abort', onWake);
    try {
      while (!this.#closed) {
        if (signal?.aborted) {
          const err = new Error('The operation was aborted', { cause: signal.reason });
          err.name = 'AbortError';
          throw Object.assign(err, { code: 'ABORT_ERR' });
        }
        const batch = byGroup ? this.receiveMessagesOnPollGroup(h, 256) : this.receiveMessagesOnConnection(h, 256);
        if (batch.length > 0) {
          yield* batch;
          continue;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      this.off('messages', onMessages);
      this.off('close', onWake);
      signal?.removeEventListener('abort', onWake);
    }
  }

  /** Changes the configuration for new connections and existing ones; all or nothing. */
  setConfig(partial: Partial<Config>): void {
    this.#assertOpen();
    configProblem(this.#native.setConfig(configValues(partial)));
  }

  /** The configuration in force. */
  getConfig(): Config {
    this.#assertOpen();
    return toConfig(this.#native.config());
  }

  /** Closes every connection politely (after a bounded linger for reliable data) and frees
   * the sockets. Safe to call twice. */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#closed = true;
      this.#p2p?.signaling.close?.();
      this.#closing = this.#native.close().then(() => {
        this.emit('close');
      });
    }
    return this.#closing;
  }

  /** `await using sockets = await NetworkingSockets.create()` closes it at scope end. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error('netmessages: the NetworkingSockets instance is closed');
  }

  #scheduleRearm(key: string, e: { conn: number; pollGroup: number }): void {
    this.#rearm.set(key, e);
    if (this.#rearmScheduled) return;
    this.#rearmScheduled = true;
    // setImmediate: received datagrams and timers get their turn between batches.
    setImmediate(() => {
      this.#rearmScheduled = false;
      const due = [...this.#rearm.values()];
      this.#rearm.clear();
      for (const r of due) {
        if (this.#closed) return;
        emitIsolated(this, 'messages', r);
      }
    });
  }

  #dispatch(events: NativeSocketsEvent[]): void {
    // After close() no handler may run into a closed instance.
    for (const e of events) {
      if (this.#closed) return;
      // Every listener runs and every event of the batch is emitted, whatever one throws.
      if (e.type === 'Signal') {
        this.#p2p?.send(e.identity, e.data);
      } else if (e.type === 'StatusChanged') {
        emitIsolated(this, 'connectionStatusChanged', {
          conn: e.conn,
          info: info(e.info),
          oldState: e.oldState as ConnectionState,
        });
      } else {
        emitIsolated(this, 'messages', { conn: e.conn, pollGroup: e.pollGroup });
      }
    }
  }
}

/** A connect call's config values (checked) and user data. */
function connectOptions(options: ConnectOptions): { values: Record<string, number>; u: number | undefined } {
  const values = configValues(options.config);
  configProblem(native.checkConfig(values));
  const u = options.userData;
  if (u !== undefined && (typeof u !== 'number' || !Number.isSafeInteger(u))) {
    throw new TypeError('userData must be a safe integer');
  }
  return { values, u };
}

function virtualPortArg(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
    throw new TypeError(`virtualPort must be an integer 0..2147483647, got ${String(v)}`);
  }
  return v;
}

function maxCount(n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
    throw new RangeError(`maxMessages must be a non-negative integer, got ${String(n)}`);
  }
  return Math.min(n, 0xffffffff);
}
