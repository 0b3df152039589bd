import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';

import { configProblem, configValues, toConfig, type Config } from './config';
import { debugEnabled, debugLine } from './debug-output';
import { emitIsolated } from './dispatch';
import { bindError, checkOptionKeys, NetmessagesError, type NetmessagesErrorCode, type SendProblem } from './errors';
import { ConnectionEnd, ConnectionState, DebugOutputType, EResult, IdentityType, SendFlags } from './generated';
import { Identity } from './identity';
import { asyncDispose, KeepAlive } from './lifecycle';
import { native, type NativeEndpoint, type NativeEvent, type NativeSessionInfo } from './native';
import { p2pSetup, splitP2pConfig, startSignaling, type P2pCreateOptions, type P2pStringConfig, type Signaling } from './p2p';
import { batchLeft, MessageBatch, toMessages, type NetworkingMessage } from './receive-batch';
import { securityOptions, type SecurityCreateOptions } from './security';
import {
  toEndpointStats,
  toReceiveBlocked,
  toSessionStats,
  type ChannelBacklog,
  type EndpointStats,
  type SessionStats,
} from './stats';
import { abortError, WritableWaiters } from './writable';

export type { Config } from './config';
export type { NetworkingMessage } from './receive-batch';

/** Options of {@link NetworkingMessages.create}. Unknown keys are a TypeError. */
export interface CreateOptions extends SecurityCreateOptions, P2pCreateOptions {
  /**
   * `'host:port'` to bind (port 0 picks a free one). Default: every interface, IPv6 and
   * IPv4 on one dual-stack socket (`[::]:0`) where the OS allows it, else `0.0.0.0:0`.
   */
  bind?: string;
  /** Returns `'host:port'` (a numeric address) for a non-IP identity, or undefined if unknown. */
  resolve?: (id: Identity) => string | undefined;
  /** Initial configuration; unknown keys are a TypeError, bad values a RangeError. */
  config?: Partial<Config> & P2pStringConfig;
  /**
   * Throw a {@link NetmessagesError} (with the reason) instead of returning
   * `EResult.InvalidParam` for bad arguments, and `InvalidState` after `close()`. Results
   * that depend on the network (`LimitExceeded`, `NoConnection`, `Ignored`) are returned
   * either way. Default false (Steam's behaviour: every send returns an EResult).
   */
  strict?: boolean;
  /**
   * Driver threads serving the port, 1 to 16 (default 1). With more than one, the port is a
   * group of `SO_REUSEPORT` sockets, one per thread, and the kernel routes each datagram to
   * the thread that owns its source address's sessions, so decryption, acks and timers of
   * many sessions run on several cores behind this one object (docs/ARCHITECTURE.md,
   * "Several driver threads"). Linux only; not with P2P (`signaling`). Worth it for a
   * server with many sessions on a machine with cores to spare; one session gains nothing.
   */
  driverThreads?: number;
}

const CREATE_OPTIONS = [
  'bind',
  'resolve',
  'config',
  'strict',
  'driverThreads',
  'identity',
  'privateKey',
  'certificate',
  'trustedCAs',
  'allowUnauthenticated',
  'signaling',
  'stunServers',
  'turnServers',
] as const;

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
  /** Why it ended (Steam's `ESteamNetConnectionEnd`; application codes are 1000-2999). */
  endReason: ConnectionEnd;
  endDebug: string;
  connectionDescription: string;
  remoteAddress: string;
  flags: number;
}

/** Steam's `SteamNetConnectionRealTimeStatus_t` (-1 marks a figure not measured yet). */
export interface RealTimeStatus {
  state: ConnectionState;
  /** Round trip, ms. */
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
  /** Expected wait of a message queued now, µs. */
  queueTime: number;
}

/** What {@link NetworkingMessages.getSessionConnectionInfo} returns. */
export interface SessionConnectionInfo {
  state: ConnectionState;
  info: ConnectionInfo | null;
  /** Real-time figures (null without a session); -1 marks a figure not measured yet. Rates
   * and qualities cover the last second or so of traffic. */
  status: RealTimeStatus | null;
  /** Lifetime counters of the session (null without one). */
  stats: SessionStats | null;
  /**
   * While the session's receive backlog is full (`recvBufferMessages` / `recvBufferSize`):
   * the channel whose unread messages hold it (`channel: null` when the session is not
   * accepted yet). Nothing more arrives from this peer, on any channel, until that
   * backlog is read. Null otherwise.
   */
  receiveBlocked: ChannelBacklog | null;
}

/** One session of {@link NetworkingMessages.listSessions}. */
export interface SessionListEntry extends SessionConnectionInfo {
  identityRemote: Identity;
  info: ConnectionInfo;
  status: RealTimeStatus;
  stats: SessionStats;
}

/** What a `receiveBlocked` event says: which backlog stalls the session with a peer. */
export interface ReceiveBlockedEvent {
  identityRemote: Identity;
  /** The channel holding the most unread messages; null: the session is not accepted yet. */
  channel: number | null;
  /** Unread messages on that channel (or held). */
  messages: number;
  /** Their bytes. */
  bytes: number;
}

/** Events of a {@link NetworkingMessages} endpoint. */
export interface NetworkingMessagesEvents {
  sessionRequest: [e: { identityRemote: Identity }];
  /** A session could not be made or broke (timeout, bad certificate, ...). */
  sessionFailed: [e: { info: ConnectionInfo }];
  /** The peer closed the session (closeSessionWithUser, idle timeout or close() there). */
  sessionClosed: [e: { info: ConnectionInfo }];
  /**
   * Messages wait on `localChannel`. Posted when a channel's queue becomes non-empty, again
   * after any receive that leaves messages behind, and when a listener is added while
   * messages wait: a listener that reads a batch per event drains the queue.
   */
  messages: [localChannel: number];
  /** A session's receive backlog is full: read `channel` (or accept the session). */
  receiveBlocked: [e: ReceiveBlockedEvent];
  /** A session that returned `LimitExceeded` has room again (see {@link NetworkingMessages.whenWritable}). */
  writable: [e: { identityRemote: Identity }];
  /** A listener threw (only with an 'error' listener; without one it is an uncaught exception). */
  error: [err: unknown];
  close: [];
}

const MAX_CHANNEL = 2 ** 31 - 1;
const MAX_MESSAGE_SIZE = 512 * 1024;

function checkChannel(name: string, ch: unknown): number {
  if (typeof ch !== 'number') throw new TypeError(`${name} must be a number, got ${typeof ch}`);
  if (!Number.isInteger(ch) || ch < 0 || ch > MAX_CHANNEL) {
    throw new RangeError(`${name} must be an integer from 0 to 2^31-1, got ${ch}`);
  }
  return ch;
}

function problem(result: EResult, code: NetmessagesErrorCode, message: string): SendProblem {
  return { result, code, message };
}

/** `host:port` with a numeric host, or undefined. */
function numericHostPort(text: string): boolean {
  const m = /^(\[[^\]]*\]|[^:[\]]+):(\d{1,5})$/.exec(text);
  return m !== null && isIP((m[1] ?? '').replace(/^\[|\]$/g, '')) !== 0 && Number(m[2]) <= 65535;
}

interface Prepared {
  peer: Identity;
  bytes: Uint8Array;
  remote: string | undefined;
}

/** The last failed call: its result now, its reason worked out when asked for. */
interface LastFailure {
  result: EResult;
  peer: Identity | undefined;
  problem: SendProblem | undefined;
}

function connectionInfo(peer: Identity, state: ConnectionState, endReason: number, endDebug: string, remoteAddress: string, flags = 0): ConnectionInfo {
  return {
    identityRemote: peer,
    state,
    endReason: endReason as ConnectionEnd,
    endDebug,
    connectionDescription: `${peer.toString()} at ${remoteAddress}`,
    remoteAddress,
    flags,
  };
}

function sessionView(peer: Identity, s: NativeSessionInfo): SessionListEntry {
  const state = s.state as ConnectionState;
  return {
    identityRemote: peer,
    state,
    info: connectionInfo(peer, state, s.endReason ?? 0, s.endDebug ?? '', s.remoteAddress, s.flags),
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
    stats: toSessionStats(s),
    receiveBlocked: toReceiveBlocked(s),
  };
}

/**
 * An endpoint of Steam's ISteamNetworkingMessages model: send to a peer's identity at any
 * time; sessions are made implicitly underneath.
 */
export class NetworkingMessages extends EventEmitter<NetworkingMessagesEvents> {
  /** The address actually bound (`::` for the default dual-stack socket). */
  readonly localAddress: { address: string; port: number };
  /**
   * Who peers know us as: the certificate's identity, else `ip:` and the bound address.
   * For a socket bound to every interface (`[::]`, `0.0.0.0`) it is the loopback address
   * (`ip:127.0.0.1:PORT`, or `ip:[::1]:PORT` for an IPv6-only socket), which peers on this
   * host can use; peers elsewhere use this host's address they know.
   */
  readonly identity: Identity;

  readonly #native: NativeEndpoint;
  /** `#native.send` as a plain function bound to the endpoint: the per-call hot path (binding/src/fast_send.rs). */
  readonly #send: (identityRemote: string, remoteAddress: string | null | undefined, data: Uint8Array, flags: number, channel: number) => number;
  readonly #resolve: ((id: Identity) => string | undefined) | undefined;
  /** P2P's signaling, when configured (`ts/p2p.ts`). */
  #p2p: { signaling: Signaling; send: (to: string, blob: Uint8Array) => void } | undefined;
  readonly #strict: boolean;
  readonly #keepAlive: KeepAlive;
  readonly #writable = new WritableWaiters<string>();
  /** Channels whose `messages` event is due again (a receive left messages behind). */
  readonly #rearm = new Set<number>();
  #rearmScheduled = false;
  #last: LastFailure | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(nativeEndpoint: NativeEndpoint, options: CreateOptions, identity: string | undefined) {
    super();
    this.#native = nativeEndpoint;
    this.#send = nativeEndpoint.sendFunction();
    this.#resolve = options.resolve;
    this.#strict = options.strict === true;
    this.#keepAlive = new KeepAlive((keep) => nativeEndpoint.setRef(keep));
    const local = nativeEndpoint.localAddress();
    const cut = local.lastIndexOf(':');
    const host = local.slice(0, cut).replace(/^\[|\]$/g, '');
    const port = Number(local.slice(cut + 1));
    this.localAddress = { address: host, port };
    if (identity !== undefined) {
      this.identity = Identity.parse(identity);
    } else if (host === '::') {
      this.identity = Identity.fromIp(nativeEndpoint.dualStack() ? `127.0.0.1:${port}` : `[::1]:${port}`);
    } else if (host === '0.0.0.0') {
      this.identity = Identity.fromIp(`127.0.0.1:${port}`);
    } else {
      this.identity = Identity.fromIp(local);
    }
    this.#hookListeners();
  }

  /** Binds a UDP socket and starts the endpoint. */
  static async create(options: CreateOptions = {}): Promise<NetworkingMessages> {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    checkOptionKeys(options, CREATE_OPTIONS, 'create');
    const security = securityOptions(options);
    if (options.resolve !== undefined && typeof options.resolve !== 'function') {
      throw new TypeError('resolve must be a function');
    }
    if (options.strict !== undefined && typeof options.strict !== 'boolean') throw new TypeError('strict must be a boolean');
    const bind = options.bind;
    if (bind !== undefined && typeof bind !== 'string') throw new TypeError('bind must be a "host:port" string');
    const driverThreads = options.driverThreads ?? 1;
    if (!Number.isInteger(driverThreads) || driverThreads < 1 || driverThreads > 16) {
      throw new RangeError(`driverThreads must be an integer from 1 to 16, got ${String(options.driverThreads)}`);
    }
    if (driverThreads > 1 && options.signaling !== undefined) {
      throw new TypeError('P2P (signaling) needs driverThreads: 1: a peer path that moves between candidates cannot follow the port\'s routing to driver threads');
    }
    const { numeric, strings } = splitP2pConfig(options.config);
    const values = configValues(numeric);
    configProblem(native.checkConfig(values));
    const p2p = await p2pSetup(options, strings, security);
    let endpoint: NetworkingMessages | undefined;
    const onEvents = (events: NativeEvent[]): void => {
      if (endpoint !== undefined) endpoint.#dispatch(events);
    };
    let bound;
    try {
      bound = native.bindEndpoint(bind ?? null, values, security, onEvents, driverThreads);
    } catch (e) {
      // Bad keys or certificates are bad arguments.
      if ((e as { code?: string }).code === 'InvalidArg') throw new TypeError((e as Error).message);
      throw e;
    }
    if (!(bound instanceof native.NativeEndpoint)) {
      const err = bindError(bound);
      debugLine(DebugOutputType.Error, 'bind', err.message);
      throw err;
    }
    endpoint = new NetworkingMessages(bound, options, security.identity);
    if (p2p !== null) {
      bound.enableP2P(p2p.native);
      endpoint.#p2p = await startSignaling(p2p, bound, security);
    }
    debugLine(DebugOutputType.Msg, 'create', () => `endpoint bound to ${bound.localAddress()} as ${endpoint?.identity.toString()}`);
    return endpoint;
  }

  /**
   * Sends a message to a peer, opening a session if needed. Returns `EResult.OK` when
   * queued; `InvalidParam` for bad arguments; `LimitExceeded` when the send buffer is full;
   * `NoConnection` when the peer cannot be reached; `InvalidState` after `close()`.
   * {@link NetworkingMessages.lastError} says why a call did not return OK.
   */
  sendMessageToUser(
    identityRemote: Identity | string,
    data: Uint8Array | string,
    sendFlags: number = SendFlags.Unreliable,
    remoteChannel = 0,
  ): EResult {
    if (this.#closed) return this.#refuse(problem(EResult.InvalidState, 'ERR_NETMESSAGES_CLOSED', 'the endpoint is closed'));
    const m = this.#prepare(identityRemote, data, sendFlags, remoteChannel);
    if (!('bytes' in m)) return this.#refuse(m);
    const r = this.#send(m.peer.toString(), m.remote, m.bytes, sendFlags, remoteChannel) as EResult;
    if (r === EResult.OK) {
      this.#last = undefined;
      return r;
    }
    return this.#failed(r, m.peer);
  }

  /**
   * Sends many messages in one native call (Steam's `SendMessages`); returns one result per
   * message, in order, with the meanings of {@link NetworkingMessages.sendMessageToUser}.
   * A bad message gets `InvalidParam` and does not stop the others (with `strict`, it
   * throws before any message is sent).
   */
  sendMessages(messages: ReadonlyArray<OutgoingMessage>): EResult[] {
    if (!Array.isArray(messages)) throw new TypeError('messages must be an array');
    const n = messages.length;
    const results = new Array<EResult>(n);
    this.#last = undefined;
    if (this.#closed) {
      this.#refuse(problem(EResult.InvalidState, 'ERR_NETMESSAGES_CLOSED', 'the endpoint is closed'));
      return results.fill(EResult.InvalidState);
    }
    const peers: string[] = [];
    const remotes: (string | undefined)[] = [];
    const peerSlots = new Map<string, number>();
    const chunks: Uint8Array[] = [];
    const sizes: number[] = [];
    const flags: number[] = [];
    const channels: number[] = [];
    const peerIndex: number[] = [];
    const slots: number[] = [];
    const slotPeers: Identity[] = [];
    for (let i = 0; i < n; i++) {
      const msg = messages[i];
      if (msg === null || typeof msg !== 'object') {
        results[i] = this.#refuse(problem(EResult.InvalidParam, 'ERR_NETMESSAGES_BAD_DATA', `messages[${i}] is not an object`));
        continue;
      }
      const f = msg.sendFlags ?? SendFlags.Unreliable;
      const ch = msg.channel ?? 0;
      const m = this.#prepare(msg.identityRemote, msg.data, f, ch);
      if (!('bytes' in m)) {
        results[i] = this.#refuse({ ...m, message: `messages[${i}]: ${m.message}` });
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
      slotPeers.push(m.peer);
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
        const r = (sent[k] ?? EResult.Fail) as EResult;
        results[i] = r === EResult.OK ? r : this.#failed(r, slotPeers[k]);
      });
    }
    return results;
  }

  /**
   * Why the last send-family call (`sendMessageToUser`, `sendMessages`,
   * `flushMessagesToUser`) did not return `OK`: its result, a code and a sentence (for
   * `sendMessages`, the last message that failed). Undefined after a call that succeeded.
   */
  lastError(): SendProblem | undefined {
    const last = this.#last;
    if (last === undefined) return undefined;
    last.problem ??= this.#explain(last.result, last.peer);
    return last.problem;
  }

  /** Records a refused argument: logs it, throws it in strict mode, returns its EResult. */
  #refuse(p: SendProblem): EResult {
    this.#last = { result: p.result, peer: undefined, problem: p };
    debugLine(DebugOutputType.Warning, p.code, () => `send refused (EResult ${EResult[p.result]}): ${p.message}`);
    if (this.#strict) throw new NetmessagesError(p.code, p.message, p.result);
    return p.result;
  }

  /** Records a result the core gave; its reason is worked out only when someone asks. */
  #failed(result: EResult, peer: Identity | undefined): EResult {
    const last: LastFailure = { result, peer, problem: undefined };
    this.#last = last;
    if (debugEnabled(DebugOutputType.Verbose)) {
      last.problem = this.#explain(result, peer);
      debugLine(DebugOutputType.Verbose, last.problem.code, `send to ${peer?.toString()} returned ${EResult[result]}: ${last.problem.message}`);
    }
    return result;
  }

  /** The reason for a result the core gave, from the session's state now. */
  #explain(result: EResult, peer: Identity | undefined): SendProblem {
    const who = peer?.toString() ?? 'the peer';
    const s = peer === undefined || this.#closed ? null : this.#native.sessionInfo(who);
    switch (result) {
      case EResult.NoConnection: {
        if (s === null) {
          return problem(
            result,
            'ERR_NETMESSAGES_NO_ROUTE',
            `no address is known for ${who}: a peer that is not an ip: identity is reached through the resolve option` +
              (this.#resolve === undefined ? ' (none given)' : ' (it returned undefined)') +
              ', or by replying on a session it opened',
          );
        }
        const state = ConnectionState[s.state] ?? String(s.state);
        const reason = s.endReason ? ` with reason ${s.endReason}${ConnectionEnd[s.endReason] ? ` ${ConnectionEnd[s.endReason]}` : ''}` : '';
        return problem(
          result,
          'ERR_NETMESSAGES_SESSION_ENDED',
          `the session with ${who} ended (${state}${reason}${s.endDebug ? `: ${s.endDebug}` : ''}); ` +
            'send with SendFlags.AutoRestartBrokenSession to start a new one, or closeSessionWithUser first',
        );
      }
      case EResult.LimitExceeded: {
        if (s === null) {
          return problem(result, 'ERR_NETMESSAGES_TABLE_FULL', `no session could be opened with ${who}: the endpoint's connection table is full`);
        }
        const limit = this.#closed ? 0 : (this.#native.config().sendBufferSize ?? 0);
        return problem(
          result,
          'ERR_NETMESSAGES_SEND_BUFFER_FULL',
          `the send buffer for ${who} is full (${s.pendingBytes} bytes queued, sendBufferSize ${limit}); ` +
            `wait with whenWritable(${JSON.stringify(who)}) or the 'writable' event, then send again`,
        );
      }
      case EResult.Ignored:
        return problem(
          result,
          'ERR_NETMESSAGES_IGNORED',
          `NoDelay: the message to ${who} could not leave at once (${s !== null && s.state === ConnectionState.Connected ? 'its queue is backed up' : 'the session is still being made'}), so it was dropped`,
        );
      case EResult.InvalidState:
        return problem(result, 'ERR_NETMESSAGES_CLOSED', 'the endpoint is closed');
      case EResult.InvalidParam:
        return problem(result, 'ERR_NETMESSAGES_BAD_FLAGS', 'the core refused the arguments');
      default:
        return problem(result, 'ERR_NETMESSAGES_FAILED', `the send to ${who} failed (EResult ${EResult[result] ?? result})`);
    }
  }

  /** Validates one outgoing message; the problem when it cannot be sent. */
  #prepare(identityRemote: Identity | string, data: Uint8Array | string, sendFlags: number, remoteChannel: number): Prepared | SendProblem {
    let peer: Identity;
    if (identityRemote instanceof Identity) {
      peer = identityRemote;
    } else if (typeof identityRemote === 'string') {
      try {
        peer = Identity.parse(identityRemote);
      } catch (e) {
        return problem(EResult.InvalidParam, 'ERR_NETMESSAGES_BAD_IDENTITY', (e as Error).message);
      }
    } else {
      return problem(
        EResult.InvalidParam,
        'ERR_NETMESSAGES_BAD_IDENTITY',
        `identityRemote must be an Identity or its text form (ip:host:port, str:name, ...), got ${identityRemote === null ? 'null' : typeof identityRemote}`,
      );
    }
    let bytes: Uint8Array;
    if (typeof data === 'string') bytes = Buffer.from(data, 'utf8');
    else if (data instanceof Uint8Array) bytes = data;
    else {
      const got: unknown = data;
      const kind = got === null ? 'null' : typeof got === 'object' ? ((Object.getPrototypeOf(got) as { constructor?: { name?: string } } | null)?.constructor?.name ?? 'object') : typeof got;
      return problem(
        EResult.InvalidParam,
        'ERR_NETMESSAGES_BAD_DATA',
        `data must be a Uint8Array (Buffer included) or a string, got ${kind}` +
          (got instanceof ArrayBuffer ? ': wrap it as new Uint8Array(buffer)' : ''),
      );
    }
    if (bytes.byteLength > MAX_MESSAGE_SIZE) {
      return problem(EResult.InvalidParam, 'ERR_NETMESSAGES_MESSAGE_TOO_LARGE', `a message is at most 512 KiB (524288 bytes), this one is ${bytes.byteLength}`);
    }
    if (typeof sendFlags !== 'number' || !Number.isInteger(sendFlags) || sendFlags < 0 || sendFlags > 0xffff) {
      return problem(EResult.InvalidParam, 'ERR_NETMESSAGES_BAD_FLAGS', `sendFlags must be a combination of SendFlags, got ${String(sendFlags)}`);
    }
    if (typeof remoteChannel !== 'number' || !Number.isInteger(remoteChannel) || remoteChannel < 0 || remoteChannel > MAX_CHANNEL) {
      return problem(EResult.InvalidParam, 'ERR_NETMESSAGES_BAD_CHANNEL', `the channel must be an integer from 0 to 2^31-1, got ${String(remoteChannel)}`);
    }
    let remote: string | undefined;
    if (peer.type !== IdentityType.IPAddress && this.#resolve !== undefined) {
      const r = this.#resolve(peer);
      if (typeof r === 'string') {
        if (!numericHostPort(r)) {
          return problem(
            EResult.InvalidParam,
            'ERR_NETMESSAGES_BAD_RESOLVE',
            `resolve returned ${JSON.stringify(r)} for ${peer.toString()}: expected 'host:port' with a numeric address (resolve hostnames beforehand, e.g. with Identity.lookup)`,
          );
        }
        remote = r;
      }
    }
    return { peer, bytes, remote };
  }

  /**
   * Takes up to `maxMessages` messages waiting on `localChannel` (one native call). If
   * messages are left, a `messages` event for the channel follows (after pending I/O), so
   * a listener that reads one batch per event still drains the queue.
   */
  receiveMessagesOnChannel(localChannel: number, maxMessages = 64): NetworkingMessage[] {
    this.#assertOpen();
    checkChannel('localChannel', localChannel);
    if (typeof maxMessages !== 'number' || !Number.isInteger(maxMessages) || maxMessages < 0) {
      throw new RangeError(`maxMessages must be a non-negative integer, got ${String(maxMessages)}`);
    }
    if (maxMessages === 0) return [];
    const batch = this.#native.receive(localChannel, Math.min(maxMessages, 0xffffffff));
    if (batch !== null && batchLeft(batch) > 0) this.#scheduleRearm(localChannel);
    return toMessages(batch, localChannel);
  }

  /**
   * Takes up to `maxMessages` messages waiting on `localChannel` as one {@link MessageBatch}:
   * payloads back to back in one buffer, figures by index, no object per message. The
   * batch receive API, beside {@link NetworkingMessages.receiveMessagesOnChannel}.
   */
  receiveBatchOnChannel(localChannel: number, maxMessages = 256): MessageBatch {
    this.#assertOpen();
    checkChannel('localChannel', localChannel);
    if (typeof maxMessages !== 'number' || !Number.isInteger(maxMessages) || maxMessages < 0) {
      throw new RangeError(`maxMessages must be a non-negative integer, got ${String(maxMessages)}`);
    }
    if (maxMessages === 0) return new MessageBatch(null);
    const batch = this.#native.receive(localChannel, Math.min(maxMessages, 0xffffffff));
    if (batch !== null && batchLeft(batch) > 0) this.#scheduleRearm(localChannel);
    return new MessageBatch(batch);
  }

  /**
   * Sends many messages to one peer from one buffer (the batch send API): message `i` is
   * `data.subarray(offsets[i], offsets[i + 1])`, so `offsets` has one more entry than there
   * are messages. One native call, no object per message; results as
   * {@link NetworkingMessages.sendMessages}, one per message, in order.
   */
  sendMessagesFromBuffer(
    identityRemote: Identity | string,
    data: Uint8Array,
    offsets: Uint32Array,
    sendFlags: number = SendFlags.Unreliable,
    remoteChannel = 0,
  ): Int32Array {
    if (!(offsets instanceof Uint32Array) || offsets.length < 1) {
      throw new TypeError('offsets must be a Uint32Array of message boundaries (count + 1 entries)');
    }
    const n = offsets.length - 1;
    if (this.#closed) {
      return new Int32Array(n).fill(this.#refuse(problem(EResult.InvalidState, 'ERR_NETMESSAGES_CLOSED', 'the endpoint is closed')));
    }
    if (!(data instanceof Uint8Array)) throw new TypeError('data must be a Uint8Array');
    const m = this.#prepare(identityRemote, new Uint8Array(0), sendFlags, remoteChannel);
    if (!('bytes' in m)) return new Int32Array(n).fill(this.#refuse(m));
    const sizes = new Uint32Array(n);
    const flags = new Uint32Array(n).fill(sendFlags);
    const channels = new Int32Array(n).fill(remoteChannel);
    const peerIndex = new Uint32Array(n);
    let bad = false;
    for (let i = 0; i < n; i++) {
      const a = offsets[i] as number;
      const b = offsets[i + 1] as number;
      if (b < a || b > data.byteLength || b - a > MAX_MESSAGE_SIZE) bad = true;
      sizes[i] = b - a;
    }
    if (bad || offsets[0] !== 0) {
      throw new RangeError('offsets must start at 0, never decrease, stay within data, and keep each message within 512 KiB');
    }
    return this.#native.sendBatch([m.peer.toString()], [m.remote], data, sizes, flags, channels, peerIndex);
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
    if (s === null) return { state: ConnectionState.None, info: null, status: null, stats: null, receiveBlocked: null };
    const { identityRemote: _, ...view } = sessionView(peer, s);
    return view;
  }

  /** Every session, with what {@link NetworkingMessages.getSessionConnectionInfo} says of each. */
  listSessions(): SessionListEntry[] {
    this.#assertOpen();
    return this.#native.sessions().map((e) => sessionView(Identity.parse(e.identity), e.info));
  }

  /**
   * The session's figures as text for people, like Steam's `GetDetailedConnectionStatus`:
   * state and end reason, current rates, ping, quality, queues, lifetime totals, and the
   * session's accept state, channels and unread backlog (naming the channel that stalls
   * it, if one does). Null without a session.
   */
  getDetailedConnectionStatus(identityRemote: Identity | string): string | null {
    this.#assertOpen();
    return this.#native.detailedStatus(Identity.from(identityRemote).toString());
  }

  /** The endpoint's counters (datagrams, drops by reason, rate limits, sessions by state). */
  getEndpointStats(): EndpointStats {
    this.#assertOpen();
    return toEndpointStats(this.#native.stats());
  }

  /**
   * Resolves once a send to the peer has room (its unsent bytes are at half of
   * `sendBufferSize` or below; at once if they are now), like waiting for a stream's
   * 'drain'. Rejects with a {@link NetmessagesError} if the session ends or the endpoint
   * closes first, and with an `AbortError` when `signal` aborts.
   */
  whenWritable(identityRemote: Identity | string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
    if (this.#closed) return Promise.reject(new NetmessagesError('ERR_NETMESSAGES_CLOSED', 'the endpoint is closed', EResult.InvalidState));
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const peer = Identity.from(identityRemote);
    const key = peer.toString();
    const room = this.#native.watchWritable(key);
    if (room === true) return Promise.resolve();
    if (room === null || room === undefined) {
      return Promise.reject(this.#sessionEnded(peer));
    }
    return this.#writable.wait(key, signal);
  }

  #sessionEnded(peer: Identity): NetmessagesError {
    const p = this.#explain(EResult.NoConnection, peer);
    return new NetmessagesError(p.code, p.message, p.result);
  }

  /** Sends whatever Nagle holds for this peer now. */
  flushMessagesToUser(identityRemote: Identity | string): EResult {
    if (this.#closed) return this.#refuse(problem(EResult.InvalidState, 'ERR_NETMESSAGES_CLOSED', 'the endpoint is closed'));
    let peer: Identity;
    try {
      peer = Identity.from(identityRemote);
    } catch (e) {
      return this.#refuse(problem(EResult.InvalidParam, 'ERR_NETMESSAGES_BAD_IDENTITY', (e as Error).message));
    }
    const r = this.#native.flush(peer.toString()) as EResult;
    if (r === EResult.OK) {
      this.#last = undefined;
      return r;
    }
    return this.#failed(r, peer);
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
  async *messages(localChannel: number, options: { signal?: AbortSignal } = {}): AsyncIterableIterator<NetworkingMessage> {
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

  /**
   * Lets the process exit while this endpoint is open, if nothing else keeps it alive (as
   * `socket.unref()`); events still arrive while it runs. Returns the endpoint.
   */
  unref(): this {
    if (!this.#closed) this.#keepAlive.unref();
    return this;
  }

  /** Keeps the process alive while this endpoint is open (the default; undoes `unref()`). */
  ref(): this {
    if (!this.#closed) this.#keepAlive.ref();
    return this;
  }

  /** Whether the endpoint keeps the process alive. */
  hasRef(): boolean {
    return !this.#closed && this.#keepAlive.hasRef();
  }

  /** Flushes queued data (bounded linger) and frees the socket. Safe to call twice. */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#closed = true;
      this.#writable.rejectAll(new NetmessagesError('ERR_NETMESSAGES_CLOSED', 'the endpoint closed', EResult.InvalidState));
      this.#closing = this.#native.close().then(() => {
        this.#p2p?.signaling.close?.();
        emitIsolated(this, 'close');
      });
    }
    return this.#closing;
  }

  /** `await using peer = await NetworkingMessages.create()` closes it at the end of the block. */
  [asyncDispose](): Promise<void> {
    return this.close();
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new NetmessagesError('ERR_NETMESSAGES_CLOSED', 'netmessages: the endpoint is closed', EResult.InvalidState);
    }
  }

  /** Messages waiting when a listener is added are announced to it (after the current tick). */
  readonly #onNewListener = (name: string | symbol): void => {
    if (name !== 'messages' || this.#closed) return;
    for (const ch of this.#native.waitingChannels()) this.#scheduleRearm(ch);
  };

  #hookListeners(): void {
    (this as EventEmitter).on('newListener', this.#onNewListener);
  }

  /** As EventEmitter's; the endpoint's own `newListener` hook stays. */
  override removeAllListeners(...args: Parameters<EventEmitter<NetworkingMessagesEvents>['removeAllListeners']>): this {
    super.removeAllListeners(...args);
    const event = args[0] as string | undefined;
    const untyped = this as EventEmitter;
    if ((event === undefined || event === 'newListener') && !untyped.rawListeners('newListener').includes(this.#onNewListener)) {
      untyped.on('newListener', this.#onNewListener);
    }
    return this;
  }

  #scheduleRearm(channel: number): void {
    this.#rearm.add(channel);
    if (this.#rearmScheduled) return;
    this.#rearmScheduled = true;
    // setImmediate, not a microtask: received datagrams and timers get their turn between
    // batches, as they would between driver events.
    setImmediate(() => {
      this.#rearmScheduled = false;
      const channels = [...this.#rearm];
      this.#rearm.clear();
      for (const ch of channels) {
        if (this.#closed) return;
        if (this.#native.queued(ch) > 0) emitIsolated(this, 'messages', ch);
      }
    });
  }

  #dispatch(events: NativeEvent[]): void {
    // After close() nothing can be read or answered: the linger's events are not the
    // application's business (a 'messages' listener would only meet a closed endpoint).
    if (this.#closed) return;
    for (const e of events) {
      if (this.#closed) return;
      switch (e.type) {
        case 'Messages':
          emitIsolated(this, 'messages', e.channel);
          break;
        case 'SessionRequest':
          emitIsolated(this, 'sessionRequest', { identityRemote: Identity.parse(e.identity) });
          break;
        case 'Signal':
          this.#p2p?.send(e.identity, e.data);
          break;
        case 'SessionFailed': {
          const peer = Identity.parse(e.identity);
          const info = connectionInfo(peer, ConnectionState.ProblemDetectedLocally, e.endReason, e.endDebug, e.remoteAddress);
          this.#endWaits(peer, info);
          emitIsolated(this, 'sessionFailed', { info });
          break;
        }
        case 'SessionClosed': {
          const peer = Identity.parse(e.identity);
          const info = connectionInfo(peer, ConnectionState.ClosedByPeer, e.endReason, e.endDebug, e.remoteAddress);
          this.#endWaits(peer, info);
          emitIsolated(this, 'sessionClosed', { info });
          break;
        }
        case 'ReceiveBlocked':
          emitIsolated(this, 'receiveBlocked', {
            identityRemote: Identity.parse(e.identity),
            channel: e.channel < 0 ? null : e.channel,
            messages: e.messages,
            bytes: e.bytes,
          });
          break;
        case 'Writable': {
          const peer = Identity.parse(e.identity);
          this.#writable.resolve(peer.toString());
          emitIsolated(this, 'writable', { identityRemote: peer });
          break;
        }
      }
    }
  }

  #endWaits(peer: Identity, info: ConnectionInfo): void {
    const key = peer.toString();
    if (!this.#writable.has(key)) return;
    const reason = `${info.endReason}${ConnectionEnd[info.endReason] ? ` ${ConnectionEnd[info.endReason]}` : ''}`;
    this.#writable.reject(
      key,
      new NetmessagesError(
        'ERR_NETMESSAGES_SESSION_ENDED',
        `the session with ${key} ended (${ConnectionState[info.state]}, reason ${reason}${info.endDebug ? `: ${info.endDebug}` : ''})`,
        EResult.NoConnection,
      ),
    );
  }
}
