// P2P in the TypeScript layer: the create options (signaling, STUN and TURN servers, Steam's
// p2p* string config keys), their resolution to addresses, the local interface list, and the
// signaling transport: a WebSocket client for the bundled server (signal/server.mjs, protocol
// v1) with reconnect, or the application's own signaling object. The core (netcore's
// p2p::transport) makes and takes the rendezvous blobs; this file only carries them.
import { createPrivateKey, sign as edSign } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { networkInterfaces } from 'node:os';

import WebSocket = require('ws');

/**
 * A signaling service of your own (GNS's `ISteamNetworkingConnectionSignaling` idea):
 * best-effort delivery of small blobs to an identity. netmessages sets `onMessage` (and
 * `onUndeliverable`) before its first `send`; your transport calls them.
 */
export interface Signaling {
  /**
   * Delivers `blob` (at most 16 KiB) to the endpoint registered as `identity`, best effort.
   * Throwing (or calling `onUndeliverable`) tells netmessages it cannot be delivered.
   */
  send(identity: string, blob: Uint8Array): void;
  /** Set by netmessages: call it with every blob that arrives for this endpoint. */
  onMessage?: (from: string, blob: Uint8Array) => void;
  /**
   * Set by netmessages: call it when a blob cannot be delivered. `reason` `'not-registered'`
   * (the peer is not online) or `'unavailable'` (the service is down) fails a session still
   * looking for its route at once; other reasons are retried.
   */
  onUndeliverable?: (to: string, reason: string, detail?: string) => void;
  /** Called by netmessages when the endpoint closes. */
  close?: () => void;
}

/** A TURN server with its long-term credentials. */
export interface TurnServer {
  /** `'host:port'` (port 3478 if omitted; a leading `turn:` is accepted). */
  address: string;
  username: string;
  password: string;
}

/** The P2P options of `create`. */
export interface P2pCreateOptions {
  /**
   * Where rendezvous blobs go: the URL of a netmessages signaling server
   * (`'ws://host:8080'`, `'wss://...'`), or your own {@link Signaling} object. Needs
   * `identity`, `privateKey` and `certificate`: peers find each other by identity.
   */
  signaling?: string | Signaling;
  /** STUN servers, `'host:port'` (Steam's `p2pStunServerList`). */
  stunServers?: string[];
  /** TURN servers with credentials (Steam's `p2pTurnServerList` / `UserList` / `PassList`). */
  turnServers?: TurnServer[];
}

/** Steam's P2P string config keys, accepted in `config` at create. */
export interface P2pStringConfig {
  /** Comma-separated STUN servers. */
  p2pStunServerList?: string;
  /** Comma-separated TURN servers. */
  p2pTurnServerList?: string;
  /** Comma-separated TURN user names, one per server. */
  p2pTurnUserList?: string;
  /** Comma-separated TURN passwords, one per server. */
  p2pTurnPassList?: string;
}

export const P2P_STRING_KEYS = ['p2pStunServerList', 'p2pTurnServerList', 'p2pTurnUserList', 'p2pTurnPassList'] as const;

/** Splits `config` into its numeric keys and Steam's P2P string keys. */
export function splitP2pConfig(config: unknown): { numeric: unknown; strings: P2pStringConfig } {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) return { numeric: config, strings: {} };
  const numeric: Record<string, unknown> = {};
  const strings: P2pStringConfig = {};
  for (const [k, v] of Object.entries(config)) {
    if ((P2P_STRING_KEYS as readonly string[]).includes(k)) {
      if (typeof v !== 'string') throw new TypeError(`config ${k} must be a string, got ${typeof v}`);
      strings[k as keyof P2pStringConfig] = v;
    } else {
      numeric[k] = v;
    }
  }
  return { numeric, strings };
}

/** What the native `enableP2p` takes. */
export interface NativeP2pOptions {
  identity: string;
  interfaces: { address: string; prefixLen: number }[];
  stunServers: string[];
  turnServers: { address: string; username: string; password: string }[];
}

/** `'host:port'` (IPv6 in brackets), `port` if none, a `stun:`/`turn:` scheme dropped. */
function hostPort(what: string, s: string): { host: string; port: number } {
  if (typeof s !== 'string' || s.trim() === '') throw new TypeError(`${what} must be a "host:port" string`);
  const t = s.trim().replace(/^(stun|turn):/i, '');
  let host: string;
  let port = 3478;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  if (v6) {
    host = v6[1] ?? '';
    if (v6[2] !== undefined) port = Number(v6[2]);
  } else {
    const i = t.lastIndexOf(':');
    if (i >= 0 && t.indexOf(':') === i) {
      host = t.slice(0, i);
      port = Number(t.slice(i + 1));
    } else {
      host = t;
    }
  }
  if (host === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(`${what} ${JSON.stringify(s)} is not "host:port"`);
  }
  return { host, port };
}

async function resolveAll(what: string, s: string): Promise<string[]> {
  const { host, port } = hostPort(what, s);
  let addrs: { address: string; family: number }[];
  try {
    addrs = await lookup(host, { all: true, verbatim: true });
  } catch (e) {
    throw new TypeError(`${what} ${JSON.stringify(s)}: cannot resolve ${host} (${(e as Error).message})`);
  }
  return addrs.map((a) => (a.family === 6 ? `[${a.address}]:${port}` : `${a.address}:${port}`));
}

function list(s: string | undefined): string[] {
  if (s === undefined) return [];
  return s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
}

/** This host's interface addresses for host candidates (no loopback, no link-local IPv6). */
export function localInterfaces(): { address: string; prefixLen: number }[] {
  const out: { address: string; prefixLen: number }[] = [];
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv6' && /^fe80:/i.test(a.address)) continue;
      const prefix = a.cidr === null ? 0 : Number(a.cidr.split('/')[1]);
      out.push({ address: a.address, prefixLen: Number.isInteger(prefix) ? prefix : 0 });
    }
  }
  return out;
}

/** The P2P setup `create` found in its options, or null when P2P is not asked for. */
export interface P2pSetup {
  signaling: string | Signaling;
  native: NativeP2pOptions;
}

/**
 * Checks the P2P options (TypeError for bad ones), resolves server names and lists the
 * interfaces. Null when no signaling is configured (STUN/TURN servers alone are an error:
 * nobody would learn the candidates).
 */
export async function p2pSetup(
  options: P2pCreateOptions,
  strings: P2pStringConfig,
  security: { identity?: string; privateKey?: Buffer; certificate?: Buffer },
): Promise<P2pSetup | null> {
  const { signaling } = options;
  const stunIn = [...list(strings.p2pStunServerList), ...(options.stunServers ?? [])];
  const turnIn: TurnServer[] = [];
  const turnAddrs = list(strings.p2pTurnServerList);
  if (turnAddrs.length > 0) {
    const users = list(strings.p2pTurnUserList);
    const passes = list(strings.p2pTurnPassList);
    if (users.length !== turnAddrs.length || passes.length !== turnAddrs.length) {
      throw new TypeError(
        `p2pTurnServerList has ${turnAddrs.length} servers but p2pTurnUserList ${users.length} and p2pTurnPassList ${passes.length} entries: give one of each per server`,
      );
    }
    turnAddrs.forEach((address, i) => turnIn.push({ address, username: users[i] ?? '', password: passes[i] ?? '' }));
  }
  if (options.turnServers !== undefined) {
    if (!Array.isArray(options.turnServers)) throw new TypeError('turnServers must be an array');
    for (const t of options.turnServers) {
      if (t === null || typeof t !== 'object' || typeof t.username !== 'string' || typeof t.password !== 'string') {
        throw new TypeError('each of turnServers must be { address, username, password } (strings)');
      }
      turnIn.push(t);
    }
  }
  if (options.stunServers !== undefined && !Array.isArray(options.stunServers)) {
    throw new TypeError('stunServers must be an array of "host:port" strings');
  }
  if (signaling === undefined) {
    if (stunIn.length > 0 || turnIn.length > 0) {
      throw new TypeError('STUN and TURN servers need signaling (the `signaling` option): peers learn candidates through it');
    }
    return null;
  }
  if (typeof signaling === 'string') {
    if (!/^wss?:\/\//.test(signaling)) throw new TypeError(`signaling must be a ws:// or wss:// URL or a signaling object, got ${JSON.stringify(signaling)}`);
  } else if (signaling === null || typeof signaling !== 'object' || typeof signaling.send !== 'function') {
    throw new TypeError('signaling must be a URL or an object with send(identity, blob)');
  }
  if (security.identity === undefined || security.identity.startsWith('ip:')) {
    throw new TypeError('P2P (signaling) needs an identity other than ip: (with privateKey and certificate): peers find each other by it');
  }
  if (typeof signaling === 'string' && (security.privateKey === undefined || security.certificate === undefined)) {
    throw new TypeError('the signaling server needs privateKey and certificate: it admits only identities a certificate proves');
  }
  const stunServers = (await Promise.all(stunIn.map((s) => resolveAll('STUN server', s)))).flat();
  const turnServers = (
    await Promise.all(
      turnIn.map(async (t) => (await resolveAll('TURN server', t.address)).map((address) => ({ address, username: t.username, password: t.password }))),
    )
  ).flat();
  return {
    signaling,
    native: { identity: security.identity, interfaces: localInterfaces(), stunServers, turnServers },
  };
}

/** What the signaling glue needs of a native endpoint. */
export interface SignalSink {
  receiveSignal(from: string, data: Uint8Array): void;
  signalUndeliverable(to: string, reason: string, detail: string): void;
}

// Ed25519 private keys from their 32-byte seed (PKCS#8 wrapping, RFC 8410).
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const CHALLENGE_CONTEXT = Buffer.from('netmessages-signal-v1\n');

/** Connection state of a {@link WebSocketSignaling}. */
export type SignalingState = 'connecting' | 'registered' | 'down' | 'replaced' | 'closed';

/** Most signals waiting while the socket (re)connects, and how long each may wait. */
const MAX_QUEUED = 256;
const MAX_QUEUE_AGE_MS = 10000;
/** Reconnect backoff. */
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 5000;
/** Longest `create` waits for the first registration. */
const FIRST_CONNECT_MS = 5000;

/**
 * The client of the bundled signaling server (protocol v1, `signal/server.mjs`; the
 * reference client is `signal/client.mjs`): registers with a signature proving the
 * certificate's key, sends and receives blobs, reconnects with backoff when the connection
 * drops. While it is (re)connecting, blobs wait (bounded); when a connection attempt fails
 * they are reported undeliverable (`unavailable`, with the error), so sessions fail with a
 * clear reason instead of waiting out their timeout.
 */
export class WebSocketSignaling implements Signaling {
  onMessage?: (from: string, blob: Uint8Array) => void;
  onUndeliverable?: (to: string, reason: string, detail?: string) => void;
  /** Called on every state change. */
  onState?: (state: SignalingState, detail: string) => void;

  state: SignalingState = 'connecting';
  lastError = '';

  readonly #url: string;
  readonly #identity: string;
  readonly #key: ReturnType<typeof createPrivateKey>;
  readonly #certificate: Buffer;
  #ws: WebSocket | undefined;
  #queue: { to: string; blob: Uint8Array; at: number }[] = [];
  #sent = new Map<number, string>();
  #nextId = 1;
  #backoff = RECONNECT_MIN_MS;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #firstAttempt: Promise<void>;
  #settleFirst: (() => void) | undefined;

  constructor(url: string, identity: string, privateKey: Uint8Array, certificate: Uint8Array) {
    this.#url = url;
    this.#identity = identity;
    this.#key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, Buffer.from(privateKey)]), format: 'der', type: 'pkcs8' });
    this.#certificate = Buffer.from(certificate);
    this.#firstAttempt = new Promise((resolve) => {
      this.#settleFirst = resolve;
    });
    this.#connect();
  }

  /** Resolves once the first connection attempt registered or failed (at most 5 s). */
  ready(): Promise<void> {
    return Promise.race([this.#firstAttempt, new Promise<void>((r) => setTimeout(r, FIRST_CONNECT_MS).unref())]);
  }

  #setState(s: SignalingState, detail = ''): void {
    this.state = s;
    this.onState?.(s, detail);
  }

  #connect(): void {
    if (this.#closed) return;
    this.#setState('connecting');
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.#url, { handshakeTimeout: 5000, maxPayload: 64 * 1024 });
    } catch (e) {
      this.#failed((e as Error).message);
      return;
    }
    this.#ws = ws;
    let registered = false;
    ws.on('error', (e: Error) => {
      this.lastError = e.message;
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (this.#ws !== ws) return;
      this.#ws = undefined;
      if (this.state === 'replaced' || this.#closed) return;
      const why = this.lastError || `closed ${code}${reason.length ? ` ${reason.toString()}` : ''}`;
      if (!registered) this.#failed(why);
      else {
        this.lastError = why;
        this.#setState('down', why);
        this.#schedule();
      }
    });
    ws.on('message', (raw: WebSocket.RawData) => {
      let msg: { type?: string; [k: string]: unknown };
      try {
        msg = JSON.parse(raw.toString()) as typeof msg;
      } catch {
        return;
      }
      switch (msg.type) {
        case 'challenge': {
          const nonce = Buffer.from(String(msg.nonce), 'base64');
          const sig = edSign(null, Buffer.concat([CHALLENGE_CONTEXT, nonce, Buffer.from(this.#identity, 'utf8')]), this.#key);
          ws.send(
            JSON.stringify({
              type: 'register',
              identity: this.#identity,
              certificate: this.#certificate.toString('base64'),
              signature: sig.toString('base64'),
            }),
          );
          break;
        }
        case 'registered':
          registered = true;
          this.#backoff = RECONNECT_MIN_MS;
          this.lastError = '';
          this.#setState('registered');
          this.#settleFirst?.();
          this.#flush();
          break;
        case 'error':
          this.lastError = `signaling server refused us: ${String(msg.code)} ${String(msg.message ?? '')}`;
          break;
        case 'signal':
          if (typeof msg.from === 'string' && typeof msg.data === 'string') {
            this.onMessage?.(msg.from, Buffer.from(msg.data, 'base64'));
          }
          break;
        case 'undeliverable': {
          const id = typeof msg.id === 'number' ? msg.id : undefined;
          const to = typeof msg.to === 'string' ? msg.to : id !== undefined ? this.#sent.get(id) : undefined;
          if (id !== undefined) this.#sent.delete(id);
          if (to !== undefined) this.onUndeliverable?.(to, String(msg.reason), `signaling server ${this.#url}`);
          break;
        }
        case 'replaced':
          // Our identity registered elsewhere: reconnecting would take it back and forth.
          this.#setState('replaced', 'the identity registered with the signaling server from elsewhere');
          break;
        default:
          break;
      }
    });
  }

  /** A connection attempt failed: what waits is undeliverable; try again later. */
  #failed(why: string): void {
    this.lastError = why;
    this.#setState('down', why);
    this.#settleFirst?.();
    const queued = this.#queue;
    this.#queue = [];
    for (const q of queued) this.onUndeliverable?.(q.to, 'unavailable', `${this.#url}: ${why}`);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#closed || this.#timer !== undefined) return;
    const wait = this.#backoff * (0.75 + Math.random() * 0.5);
    this.#backoff = Math.min(this.#backoff * 2, RECONNECT_MAX_MS);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect();
    }, wait);
    this.#timer.unref();
  }

  #flush(): void {
    const now = Date.now();
    const queued = this.#queue;
    this.#queue = [];
    for (const q of queued) {
      if (now - q.at <= MAX_QUEUE_AGE_MS) this.send(q.to, q.blob);
    }
  }

  send(identity: string, blob: Uint8Array): void {
    if (this.#closed) return;
    const ws = this.#ws;
    if (this.state === 'registered' && ws !== undefined && ws.readyState === WebSocket.OPEN) {
      const id = this.#nextId++;
      this.#sent.set(id, identity);
      if (this.#sent.size > 1024) {
        const first = this.#sent.keys().next().value;
        if (first !== undefined) this.#sent.delete(first);
      }
      ws.send(JSON.stringify({ type: 'signal', to: identity, data: Buffer.from(blob).toString('base64'), id }));
      return;
    }
    if (this.state === 'connecting' && this.#queue.length < MAX_QUEUED) {
      this.#queue.push({ to: identity, blob: Buffer.from(blob), at: Date.now() });
      return;
    }
    const why = this.state === 'replaced' ? 'our identity registered from elsewhere' : this.lastError || this.state;
    // Reported after this call returns, as the server's answer would be.
    setImmediate(() => this.onUndeliverable?.(identity, 'unavailable', `${this.#url}: ${why}`));
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#ws?.close();
    this.#ws = undefined;
    this.#setState('closed');
  }
}

/**
 * Connects a {@link Signaling} (or the bundled server's client for a URL) to a native
 * endpoint; returns the signaling object and a function that carries one outgoing blob.
 */
export async function startSignaling(
  setup: P2pSetup,
  sink: SignalSink,
  security: { privateKey?: Buffer; certificate?: Buffer },
): Promise<{ signaling: Signaling; send: (to: string, blob: Uint8Array) => void }> {
  const s: Signaling =
    typeof setup.signaling === 'string'
      ? new WebSocketSignaling(
          setup.signaling,
          setup.native.identity,
          security.privateKey as Buffer,
          security.certificate as Buffer,
        )
      : setup.signaling;
  s.onMessage = (from, blob) => {
    if (typeof from === 'string' && blob instanceof Uint8Array) sink.receiveSignal(from, blob);
  };
  s.onUndeliverable = (to, reason, detail) => {
    if (typeof to === 'string') sink.signalUndeliverable(to, String(reason), String(detail ?? ''));
  };
  if (s instanceof WebSocketSignaling) await s.ready();
  const send = (to: string, blob: Uint8Array): void => {
    try {
      s.send(to, blob);
    } catch (e) {
      sink.signalUndeliverable(to, 'unavailable', `signaling: ${(e as Error).message}`);
    }
  };
  return { signaling: s, send };
}
