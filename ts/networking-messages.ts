import { EventEmitter, once } from 'node:events';

import { configProblem, configValues, toConfig, type Config } from './config';
import { ConnectionState, EResult, IdentityType, SendFlags } from './generated';
import { Identity } from './identity';
import { native, type NativeEndpoint, type NativeEvent } from './native';
import { p2pSetup, splitP2pConfig, startSignaling, type P2pCreateOptions, type P2pStringConfig, type Signaling } from './p2p';
import { toMessages, type NetworkingMessage } from './receive-batch';
import { securityOptions, type SecurityCreateOptions } from './security';

export type { Config } from './config';
export type { NetworkingMessage } from './receive-batch';

/** Options of {@link NetworkingMessages.create}. */
export interface CreateOptions extends SecurityCreateOptions, P2pCreateOptions {
  /** `'host:port'` to bind; default `'0.0.0.0:0'`. */
  bind?: string;
  /** Returns `'host:port'` for a non-IP identity, or undefined if unknown. */
  resolve?: (id: Identity) => string | undefined;
  /** Initial configuration; unknown keys are a TypeError, bad values a RangeError. */
  config?: Partial<Config> & P2pStringConfig;
}

/** One message for {@link NetworkingMessages.sendMessages}. */
export interface OutgoingMessage {
  identityRemote: Identity | string;
  data: Uint8Array | string;
  /** Default `SendFlags.Unreliable`. */
  sendFlags?: number;
  /** The remote channel; default 0. */
  channel?: number;
}

/** Steam's `SteamNetConnectionInfo_t`, in part. */
export interface ConnectionInfo {
  identityRemote: Identity;
  state: ConnectionState;
  endReason: number;
  endDebug: string;
  connectionDescription: string;
  remoteAddress: string;
  flags: number;
}

/** Steam's `SteamNetConnectionRealTimeStatus_t`. */
export interface RealTimeStatus {
  state: ConnectionState;
  ping: number;
  connectionQualityLocal: number;
  connectionQualityRemote: number;
  outPacketsPerSec: number;
  outBytesPerSec: number;
  inPacketsPerSec: number;
  inBytesPerSec: number;
  sendRateBytesPerSecond: number;
  pendingUnreliable: number;
  pendingReliable: number;
  sentUnackedReliable: number;
  queueTime: number;
}

/** What {@link NetworkingMessages.getSessionConnectionInfo} returns. */
export interface SessionConnectionInfo {
  state: ConnectionState;
  info: ConnectionInfo | null;
  /** Real-time figures (null without a session); -1 marks a figure not measured yet. Rates
   * and qualities cover the last second or so of traffic. */
  status: RealTimeStatus | null;
}

/** Events of a {@link NetworkingMessages} endpoint. */
export interface NetworkingMessagesEvents {
  sessionRequest: [e: { identityRemote: Identity }];
  sessionFailed: [e: { info: ConnectionInfo }];
  messages: [localChannel: number];
  close: [];
}

const MAX_CHANNEL = 2 ** 31 - 1;

/** The error an aborted wait ends with, shaped as Node's own (`events.on`, timers/promises). */
function abortError(signal: AbortSignal): Error {
  const err = new Error('The operation was aborted', { cause: signal.reason });
  err.name = 'AbortError';
  return Object.assign(err, { code: 'ABORT_ERR' });
}
const MAX_MESSAGE_SIZE = 512 * 1024;

function checkChannel(name: string, ch: unknown): number {
  if (typeof ch !== 'number') throw new TypeError(`${name} must be a number, got ${typeof ch}`);
  if (!Number.isInteger(ch) || ch < 0 || ch > MAX_CHANNEL) {
    throw new RangeError(`${name} must be an integer from 0 to 2^31-1, got ${ch}`);
  }
  return ch;
}

/**
 * An endpoint of Steam's ISteamNetworkingMessages model: send to a peer's identity at any
 * time; sessions are made implicitly underneath.
 */
export class NetworkingMessages extends EventEmitter<NetworkingMessagesEvents> {
  /** The address actually bound. */
  readonly localAddress: { address: string; port: number };
  /** Who peers know us as. */
  readonly identity: Identity;

  readonly #native: NativeEndpoint;
  readonly #resolve: ((id: Identity) => string | undefined) | undefined;
  /** P2P's signaling, when configured (`ts/p2p.ts`). */
  #p2p: { signaling: Signaling; send: (to: string, blob: Uint8Array) => void } | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(
    nativeEndpoint: NativeEndpoint,
    resolve: CreateOptions['resolve'],
    identity: string | undefined,
  ) {
    super();
    this.#native = nativeEndpoint;
    this.#resolve = resolve;
    const local = nativeEndpoint.localAddress();
    const cut = local.lastIndexOf(':');
    const host = local.slice(0, cut).replace(/^\[|\]$/g, '');
    this.localAddress = { address: host, port: Number(local.slice(cut + 1)) };
    this.identity = identity === undefined ? Identity.fromIp(local) : Identity.parse(identity);
  }

  /** Binds a UDP socket and starts the endpoint. */
  static async create(options: CreateOptions = {}): Promise<NetworkingMessages> {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const security = securityOptions(options);
    if (options.resolve !== undefined && typeof options.resolve !== 'function') {
      throw new TypeError('resolve must be a function');
    }
    const bind = options.bind ?? '0.0.0.0:0';
    if (typeof bind !== 'string') throw new TypeError('bind must be a "host:port" string');
    const { numeric, strings } = splitP2pConfig(options.config);
    const values = configValues(numeric);
    configProblem(native.checkConfig(values));
    const p2p = await p2pSetup(options, strings, security);
    let endpoint: NetworkingMessages | undefined;
    const onEvents = (events: NativeEvent[]): void => {
      if (endpoint !== undefined) endpoint.#dispatch(events);
    };
    let nativeEndpoint: NativeEndpoint;
    try {
      nativeEndpoint = native.NativeEndpoint.bind(bind, values, security, onEvents);
    } catch (e) {
      // Bad keys or certificates are bad arguments; a refused socket is not.
      if ((e as { code?: string }).code === 'InvalidArg') throw new TypeError((e as Error).message);
      throw e;
    }
    endpoint = new NetworkingMessages(nativeEndpoint, options.resolve, security.identity);
    if (p2p !== null) {
      nativeEndpoint.enableP2P(p2p.native);
      endpoint.#p2p = await startSignaling(p2p, nativeEndpoint, security);
    }
    return endpoint;
  }

  /**
   * Sends a message to a peer, opening a session if needed. Returns `EResult.OK` when
   * queued; `InvalidParam` for bad arguments; `LimitExceeded` when the send buffer is full;
   * `NoConnection` when the peer cannot be reached; `InvalidState` after `close()`.
   */
  sendMessageToUser(
    identityRemote: Identity | string,
    data: Uint8Array | string,
    sendFlags: number = SendFlags.Unreliable,
    remoteChannel = 0,
  ): EResult {
    if (this.#closed) return EResult.InvalidState;
    const m = this.#prepare(identityRemote, data, sendFlags, remoteChannel);
    if (typeof m === 'number') return m;
    return this.#native.send(m.peer.toString(), m.remote, m.bytes, sendFlags, remoteChannel) as EResult;
  }

  /**
   * Sends many messages in one native call (Steam's `SendMessages`); returns one result per
   * message, in order, with the meanings of {@link NetworkingMessages.sendMessageToUser}.
   * A bad message gets `InvalidParam` and does not stop the others.
   */
  sendMessages(messages: ReadonlyArray<OutgoingMessage>): EResult[] {
    if (!Array.isArray(messages)) throw new TypeError('messages must be an array');
    const n = messages.length;
    const results = new Array<EResult>(n);
    if (this.#closed) return results.fill(EResult.InvalidState);
    const peers: string[] = [];
    const remotes: (string | undefined)[] = [];
    const peerSlots = new Map<string, number>();
    const chunks: Uint8Array[] = [];
    const sizes: number[] = [];
    const flags: number[] = [];
    const channels: number[] = [];
    const peerIndex: number[] = [];
    const slots: number[] = [];
    for (let i = 0; i < n; i++) {
      const msg = messages[i];
      if (msg === null || typeof msg !== 'object') {
        results[i] = EResult.InvalidParam;
        continue;
      }
      const f = msg.sendFlags ?? SendFlags.Unreliable;
      const ch = msg.channel ?? 0;
      const m = this.#prepare(msg.identityRemote, msg.data, f, ch);
      if (typeof m === 'number') {
        results[i] = m;
        continue;
      }
      const text = m.peer.toString();
      let slot = peerSlots.get(text);
      if (slot === undefined) {
        slot = peers.length;
        peers.push(text);
        remotes.push(m.remote);
        peerSlots.set(text, slot);
      }
      chunks.push(m.bytes);
      sizes.push(m.bytes.byteLength);
      flags.push(f);
      channels.push(ch);
      peerIndex.push(slot);
      slots.push(i);
    }
    if (slots.length > 0) {
      const sent = this.#native.sendBatch(
        peers,
        remotes,
        Buffer.concat(chunks),
        Uint32Array.from(sizes),
        Uint32Array.from(flags),
        Int32Array.from(channels),
        Uint32Array.from(peerIndex),
      );
      slots.forEach((i, k) => {
        results[i] = (sent[k] ?? EResult.Fail) as EResult;
      });
    }
    return results;
  }

  /** Validates one outgoing message; an EResult when it cannot be sent. */
  #prepare(
    identityRemote: Identity | string,
    data: Uint8Array | string,
    sendFlags: number,
    remoteChannel: number,
  ): { peer: Identity; bytes: Uint8Array; remote: string | undefined } | EResult {
    let peer: Identity;
    try {
      peer = Identity.from(identityRemote);
    } catch {
      return EResult.InvalidParam;
    }
    let bytes: Uint8Array;
    if (typeof data === 'string') bytes = Buffer.from(data, 'utf8');
    else if (data instanceof Uint8Array) bytes = data;
    else return EResult.InvalidParam;
    if (bytes.byteLength > MAX_MESSAGE_SIZE) return EResult.InvalidParam;
    if (typeof sendFlags !== 'number' || !Number.isInteger(sendFlags) || sendFlags < 0 || sendFlags > 0xffff) {
      return EResult.InvalidParam;
    }
    if (
      typeof remoteChannel !== 'number' ||
      !Number.isInteger(remoteChannel) ||
      remoteChannel < 0 ||
      remoteChannel > MAX_CHANNEL
    ) {
      return EResult.InvalidParam;
    }
    let remote: string | undefined;
    if (peer.type !== IdentityType.IPAddress && this.#resolve !== undefined) {
      const r = this.#resolve(peer);
      if (typeof r === 'string') remote = r;
    }
    return { peer, bytes, remote };
  }

  /** Takes up to `maxMessages` messages waiting on `localChannel` (one native call). */
  receiveMessagesOnChannel(localChannel: number, maxMessages = 64): NetworkingMessage[] {
    this.#assertOpen();
    checkChannel('localChannel', localChannel);
    if (typeof maxMessages !== 'number' || !Number.isInteger(maxMessages) || maxMessages < 0) {
      throw new RangeError(`maxMessages must be a non-negative integer, got ${String(maxMessages)}`);
    }
    if (maxMessages === 0) return [];
    return toMessages(this.#native.receive(localChannel, Math.min(maxMessages, 0xffffffff)), localChannel);
  }

  /** Accepts a pending session; false if no request from that peer waits. */
  acceptSessionWithUser(identityRemote: Identity | string): boolean {
    this.#assertOpen();
    return this.#native.accept(Identity.from(identityRemote).toString());
  }

  /** Closes the session at once and purges that peer's unread messages. */
  closeSessionWithUser(identityRemote: Identity | string): boolean {
    this.#assertOpen();
    return this.#native.closeSession(Identity.from(identityRemote).toString());
  }

  /** Closes one channel with a peer; the session closes with its last channel. */
  closeChannelWithUser(identityRemote: Identity | string, localChannel: number): boolean {
    this.#assertOpen();
    checkChannel('localChannel', localChannel);
    return this.#native.closeChannel(Identity.from(identityRemote).toString(), localChannel);
  }

  /** State of the session with a peer. */
  getSessionConnectionInfo(identityRemote: Identity | string): SessionConnectionInfo {
    this.#assertOpen();
    const peer = Identity.from(identityRemote);
    const s = this.#native.sessionInfo(peer.toString());
    if (s === null) return { state: ConnectionState.None, info: null, status: null };
    const state = s.state as ConnectionState;
    return {
      state,
      info: {
        identityRemote: peer,
        state,
        endReason: s.endReason ?? 0,
        endDebug: s.endDebug ?? '',
        connectionDescription: `${peer.toString()} at ${s.remoteAddress}`,
        remoteAddress: s.remoteAddress,
        flags: s.flags,
      },
      status: {
        state,
        // Steam reports -1 for what is not measured yet (ping before a round trip; quality
        // before a full second of traffic).
        ping: s.pingMs === undefined || s.pingMs === null ? -1 : Math.round(s.pingMs),
        connectionQualityLocal: s.qualityLocal,
        connectionQualityRemote: s.qualityRemote,
        outPacketsPerSec: s.outPacketsPerSec,
        outBytesPerSec: s.outBytesPerSec,
        inPacketsPerSec: s.inPacketsPerSec,
        inBytesPerSec: s.inBytesPerSec,
        sendRateBytesPerSecond: s.sendRate,
        pendingUnreliable: s.pendingUnreliable,
        pendingReliable: s.pendingReliable,
        sentUnackedReliable: s.unackedReliable,
        queueTime: s.queueTimeUs,
      },
    };
  }

  /** Sends whatever Nagle holds for this peer now. */
  flushMessagesToUser(identityRemote: Identity | string): EResult {
    if (this.#closed) return EResult.InvalidState;
    let peer: Identity;
    try {
      peer = Identity.from(identityRemote);
    } catch {
      return EResult.InvalidParam;
    }
    return this.#native.flush(peer.toString()) as EResult;
  }

  /** Changes configuration for this endpoint; all or nothing. */
  setConfig(partial: Partial<Config>): void {
    this.#assertOpen();
    configProblem(this.#native.setConfig(configValues(partial)));
  }

  /** The configuration in force. */
  getConfig(): Config {
    this.#assertOpen();
    return toConfig(this.#native.config());
  }

  /**
   * Messages on a channel as an async iterator; ends when the endpoint closes. With
   * `signal`, an abort ends the wait with the signal's reason (an `AbortError`), as Node's
   * `events.on` does.
   */
  async *messages(
    localChannel: number,
    options: { signal?: AbortSignal } = {},
  ): AsyncIterableIterator<NetworkingMessage> {
    checkChannel('localChannel', localChannel);
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
    // One set of listeners for the iterator's whole life (not one per wait), removed when
    // it ends however it ends.
    let wake: (() => void) | undefined;
    const onMessages = (ch: number): void => {
      if (ch === localChannel) wake?.();
    };
    const onWake = (): void => wake?.();
    this.on('messages', onMessages);
    this.on('close', onWake);
    signal?.addEventListener('abort', onWake);
    try {
      while (!this.#closed) {
        if (signal?.aborted) throw abortError(signal);
        const batch = this.receiveMessagesOnChannel(localChannel, 256);
        if (batch.length > 0) {
          yield* batch;
          continue;
        }
        // Set in the same tick as the empty receive: no event can fall between them.
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

  /** Flushes queued data (bounded linger) and frees the socket. Safe to call twice. */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#closed = true;
      this.#closing = this.#native.close().then(() => {
        this.#p2p?.signaling.close?.();
        this.emit('close');
      });
    }
    return this.#closing;
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error('netmessages: the endpoint is closed');
  }

  #dispatch(events: NativeEvent[]): void {
    for (const e of events) {
      switch (e.type) {
        case 'Messages':
          this.emit('messages', e.channel);
          break;
        case 'SessionRequest':
          this.emit('sessionRequest', { identityRemote: Identity.parse(e.identity) });
          break;
        case 'Signal':
          this.#p2p?.send(e.identity, e.data);
          break;
        case 'SessionFailed': {
          const peer = Identity.parse(e.identity);
          this.emit('sessionFailed', {
            info: {
              identityRemote: peer,
              state: ConnectionState.ProblemDetectedLocally,
              endReason: e.endReason,
              endDebug: e.endDebug,
              connectionDescription: `${peer.toString()} at ${e.remoteAddress}`,
              remoteAddress: e.remoteAddress,
              flags: 0,
            },
          });
          break;
        }
      }
    }
  }
}
