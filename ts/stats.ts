// The endpoint's and the sessions' counters as typed objects, and their Prometheus text
// form. The counters are the ones docs/SECURITY.md and docs/ARCHITECTURE.md cite.
import { ConnectionState } from './generated';
import type { NativeBacklogInfo, NativeEndpointStatsInfo, NativeSessionInfo } from './native';

/** Counters of one endpoint since it was created (all cumulative unless said otherwise). */
export interface EndpointStats {
  /** Datagrams received from the socket. */
  datagramsReceived: number;
  /** Their bytes (UDP payload). */
  bytesReceived: number;
  /** Datagrams sent. */
  datagramsSent: number;
  /** Their bytes (UDP payload). */
  bytesSent: number;
  /** Datagrams that did not parse. */
  droppedMalformed: number;
  /** Data packets for a live session that failed authentication (forged, damaged, or for another session). */
  droppedUnauthenticated: number;
  /** Data packets dropped as replays (seen before, or older than the 128-packet window). */
  droppedReplayed: number;
  /** Datagrams a session's connection refused (the two above, duplicates, back-pressure, bad frames). */
  droppedByConnection: number;
  /** Datagrams for no connection we know (answered with NoConnection, within the rate limit). */
  droppedUnknownConnection: number;
  /** Connect requests with a bad or stale cookie, or a protocol older than we speak. */
  droppedBadChallenge: number;
  /** Connect requests refused for their certificate or crypt info. */
  droppedBadCrypto: number;
  /** Connect requests refused because the connection table (16,384) was full. */
  droppedTableFull: number;
  /** Challenge requests answered. */
  challengesAnswered: number;
  /** Datagrams from unknown sources left unanswered: their source's rate limit was spent. */
  rateLimitedSource: number;
  /** ... the endpoint-wide rate limit was spent. */
  rateLimitedGlobal: number;
  /** Handshakes run (connect requests checked and answered with a key exchange, ConnectOKs checked): the expensive work. */
  handshakes: number;
  /** Valid connect requests (or ConnectOKs) left unanswered: their source IP's handshake budget was spent (the peer retries). */
  handshakesLimitedSource: number;
  /** ... the endpoint-wide handshake budget (512 a second) was spent. */
  handshakesLimitedGlobal: number;
  /** Connect requests with a new connection id refused because the session at their address still answers probes (a replay, or a peer that did not restart). */
  refusedConnectLive: number;
  /** Sessions given up because their peer asked for a new connection and then answered none of the probes (it restarted). */
  peersGoneSilent: number;
  /** Control messages (close, NoConnection, ConnectOK, ChallengeReply) naming a session's connection from an address that is not its peer's: refused. */
  refusedWrongSource: number;
  /** Closes or NoConnection from a session's address naming another peer connection id: refused. */
  refusedWrongPeerId: number;
  /** Unreliable messages dropped because a session's receive backlog was full (reliable ones never are). */
  droppedReceiveQueueFull: number;
  /** Times a session's receive backlog filled up (each posted a `receiveBlocked` event). */
  receiveStalls: number;
  /** Sessions now. */
  sessions: number;
  /** Sessions now, by state name (states with none are left out). */
  sessionsByState: Partial<Record<keyof typeof ConnectionState, number>>;
  /** Sessions whose receive backlog is full now. */
  sessionsReceiveBlocked: number;
  /** Messages received and not read yet, all channels. */
  messagesQueued: number;
  /**
   * Of `datagramsReceived`, those read on the JavaScript thread itself (while it is idle),
   * not handed over by the driver thread (docs/ARCHITECTURE.md, "Receive path").
   */
  datagramsReceivedOnJsThread: number;
}

/** A channel's unread messages in one session. */
export interface ChannelBacklog {
  /** The channel; `null` for messages held until the session is accepted. */
  channel: number | null;
  messages: number;
  bytes: number;
}

/** One session's lifetime figures. */
export interface SessionStats {
  /** Whether the application accepted it (by accepting, or by sending to the peer). */
  accepted: boolean;
  packetsSent: number;
  bytesSent: number;
  packetsReceived: number;
  bytesReceived: number;
  /** Packets declared lost (their reliable data was sent again). */
  packetsLost: number;
  /** Packets the peer acknowledged. */
  packetsAcked: number;
  /** Reliable bytes queued again because the packet carrying them was lost. */
  reliableBytesResent: number;
  /** Datagrams from the peer dropped on arrival (duplicates, back-pressure, failed authentication, replays). */
  packetsDropped: number;
  /** Of those, failed authentication. */
  packetsUnauthenticated: number;
  /** Of those, replays. */
  packetsReplayed: number;
  /** Payload bytes queued, not sent yet. */
  pendingBytes: number;
  /** Messages received and not read yet (or held until accepted). */
  unreadMessages: number;
  /** Their bytes. */
  unreadBytes: number;
  /** Unread messages by channel. */
  backlog: ChannelBacklog[];
}

function backlog(b: NativeBacklogInfo): ChannelBacklog {
  return { channel: b.channel < 0 ? null : b.channel, messages: b.messages, bytes: b.bytes };
}

/** The native session snapshot's figures as {@link SessionStats}. */
export function toSessionStats(s: NativeSessionInfo): SessionStats {
  return {
    accepted: s.accepted,
    packetsSent: s.packetsSent,
    bytesSent: s.bytesSent,
    packetsReceived: s.packetsReceived,
    bytesReceived: s.bytesReceived,
    packetsLost: s.packetsLost,
    packetsAcked: s.packetsAcked,
    reliableBytesResent: s.reliableBytesResent,
    packetsDropped: s.packetsDropped,
    packetsUnauthenticated: s.packetsUnauthenticated,
    packetsReplayed: s.packetsReplayed,
    pendingBytes: s.pendingBytes,
    unreadMessages: s.unreadMessages,
    unreadBytes: s.unreadBytes,
    backlog: s.backlog.map(backlog),
  };
}

/** What holds a stalled session, or null. */
export function toReceiveBlocked(s: NativeSessionInfo): ChannelBacklog | null {
  return s.receiveBlocked ? backlog(s.receiveBlocked) : null;
}

/** The native endpoint counters as {@link EndpointStats}. */
export function toEndpointStats(n: NativeEndpointStatsInfo): EndpointStats {
  const byState: Partial<Record<keyof typeof ConnectionState, number>> = {};
  for (const { state, count } of n.sessionsByState) {
    const name = ConnectionState[state] as keyof typeof ConnectionState | undefined;
    if (name !== undefined) byState[name] = count;
  }
  return {
    datagramsReceived: n.datagramsReceived,
    bytesReceived: n.bytesReceived,
    datagramsSent: n.datagramsSent,
    bytesSent: n.bytesSent,
    droppedMalformed: n.droppedMalformed,
    droppedUnauthenticated: n.droppedUnauthenticated,
    droppedReplayed: n.droppedReplayed,
    droppedByConnection: n.droppedByConnection,
    droppedUnknownConnection: n.droppedUnknownConnection,
    droppedBadChallenge: n.droppedBadChallenge,
    droppedBadCrypto: n.droppedBadCrypto,
    droppedTableFull: n.droppedTableFull,
    challengesAnswered: n.challengesAnswered,
    rateLimitedSource: n.rateLimitedSource,
    rateLimitedGlobal: n.rateLimitedGlobal,
    handshakes: n.handshakes,
    handshakesLimitedSource: n.handshakesLimitedSource,
    handshakesLimitedGlobal: n.handshakesLimitedGlobal,
    refusedConnectLive: n.refusedConnectLive,
    peersGoneSilent: n.peersGoneSilent,
    refusedWrongSource: n.refusedWrongSource,
    refusedWrongPeerId: n.refusedWrongPeerId,
    droppedReceiveQueueFull: n.droppedReceiveQueueFull,
    receiveStalls: n.receiveStalls,
    sessions: n.sessions,
    sessionsByState: byState,
    sessionsReceiveBlocked: n.sessionsReceiveBlocked,
    messagesQueued: n.messagesQueued,
    datagramsReceivedOnJsThread: n.datagramsReceivedOnJsThread,
  };
}

/** Prometheus help text and type of each exported counter or gauge. */
const METRICS: ReadonlyArray<[keyof EndpointStats, string, 'counter' | 'gauge', string]> = [
  ['datagramsReceived', 'datagrams_received_total', 'counter', 'Datagrams received.'],
  ['bytesReceived', 'received_bytes_total', 'counter', 'UDP payload bytes received.'],
  ['datagramsSent', 'datagrams_sent_total', 'counter', 'Datagrams sent.'],
  ['bytesSent', 'sent_bytes_total', 'counter', 'UDP payload bytes sent.'],
  ['droppedMalformed', 'dropped_malformed_total', 'counter', 'Datagrams that did not parse.'],
  ['droppedUnauthenticated', 'dropped_unauthenticated_total', 'counter', 'Data packets that failed authentication.'],
  ['droppedReplayed', 'dropped_replayed_total', 'counter', 'Data packets dropped as replays.'],
  ['droppedByConnection', 'dropped_by_connection_total', 'counter', 'Datagrams a connection refused.'],
  ['droppedUnknownConnection', 'dropped_unknown_connection_total', 'counter', 'Datagrams for no known connection.'],
  ['droppedBadChallenge', 'dropped_bad_challenge_total', 'counter', 'Connect requests with a bad cookie or an old protocol.'],
  ['droppedBadCrypto', 'dropped_bad_crypto_total', 'counter', 'Connect requests refused for their certificate or crypt info.'],
  ['droppedTableFull', 'dropped_table_full_total', 'counter', 'Connect requests refused for a full connection table.'],
  ['challengesAnswered', 'challenges_answered_total', 'counter', 'Challenge requests answered.'],
  ['rateLimitedSource', 'rate_limited_source_total', 'counter', 'Unknown-source datagrams unanswered for the per-source limit.'],
  ['rateLimitedGlobal', 'rate_limited_global_total', 'counter', 'Unknown-source datagrams unanswered for the endpoint-wide limit.'],
  ['droppedReceiveQueueFull', 'dropped_receive_queue_full_total', 'counter', 'Unreliable messages dropped for a full receive backlog.'],
  ['receiveStalls', 'receive_stalls_total', 'counter', 'Times a session receive backlog filled up.'],
  ['sessionsReceiveBlocked', 'sessions_receive_blocked', 'gauge', 'Sessions whose receive backlog is full.'],
  ['messagesQueued', 'messages_queued', 'gauge', 'Messages received and not read yet.'],
  ['datagramsReceivedOnJsThread', 'datagrams_received_on_js_thread_total', 'counter', 'Datagrams read on the JavaScript thread.'],
];

function labelText(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(k)) throw new TypeError(`bad Prometheus label name ${JSON.stringify(k)}`);
    return `${k}="${String(v).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`;
  });
  return parts.join(',');
}

/**
 * Endpoint counters in the Prometheus text exposition format (version 0.0.4), for a
 * `/metrics` handler: `netmessages_<name>` counters and gauges, with `labels` on every
 * sample (say, `{ endpoint: 'game' }` when a process has several). Sessions by state are
 * one gauge with a `state` label.
 */
export function toPrometheus(stats: EndpointStats, options: { prefix?: string; labels?: Record<string, string> } = {}): string {
  const prefix = options.prefix ?? 'netmessages_';
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) throw new TypeError(`bad Prometheus metric prefix ${JSON.stringify(prefix)}`);
  const base = labelText(options.labels ?? {});
  const lines: string[] = [];
  const sample = (name: string, extra: string, value: number): void => {
    const all = [base, extra].filter((s) => s !== '').join(',');
    lines.push(`${prefix}${name}${all ? `{${all}}` : ''} ${value}`);
  };
  for (const [key, name, type, help] of METRICS) {
    lines.push(`# HELP ${prefix}${name} ${help}`, `# TYPE ${prefix}${name} ${type}`);
    sample(name, '', stats[key] as number);
  }
  lines.push(`# HELP ${prefix}sessions Sessions, by state.`, `# TYPE ${prefix}sessions gauge`);
  const states = new Set<keyof typeof ConnectionState>(['Connecting', 'Connected', 'ClosedByPeer', 'ProblemDetectedLocally']);
  for (const k of Object.keys(stats.sessionsByState)) states.add(k as keyof typeof ConnectionState);
  for (const name of states) sample('sessions', `state="${name}"`, stats.sessionsByState[name] ?? 0);
  return `${lines.join('\n')}\n`;
}
