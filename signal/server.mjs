// The netmessages signaling server: best-effort delivery of small rendezvous blobs (GNS's
// CMsgSteamNetworkingP2PRendezvous, opaque here) between peers registered by identity, over
// WebSocket (npm `ws`).
//
// Protocol v1, JSON text frames (see docs/P2P.md):
//   server -> peer   {"type":"challenge","version":1,"nonce":B64}            on connect
//   peer -> server   {"type":"register","identity":ID,"certificate":B64,"signature":B64}
//                    signature = Ed25519 by the certificate's key over
//                    "netmessages-signal-v1\n" || nonce (32 bytes) || identity (UTF-8)
//   server -> peer   {"type":"registered","identity":ID}   or   {"type":"error",...} + close
//   peer -> server   {"type":"signal","to":ID,"data":B64[,"id":N]}
//   server -> peer   {"type":"signal","from":ID,"data":B64}     (from = the sender's proven identity)
//   server -> peer   {"type":"undeliverable","to":ID,"reason":R[,"id":N]}
//                    R: not-registered | rate-limited | queue-full | too-large | unavailable
//   server -> peer   {"type":"replaced"} + close 4009 when the identity registers elsewhere
//
// Everything is bounded: frame size, blob size, per-connection token buckets, the recipient's
// socket buffer (best-effort: over it, the blob is dropped and the sender told), connections,
// time to register. With an adapter (signal/redis.mjs) several servers share presence.
import { randomBytes } from 'node:crypto';
import { WebSocketServer } from 'ws';

import { CertError, verifyCertificate, verifySignature } from './cert.mjs';

export const PROTOCOL_VERSION = 1;
export const CHALLENGE_CONTEXT = Buffer.from('netmessages-signal-v1\n');
/** Largest blob (decoded): netcore's MAX_RENDEZVOUS_LEN. */
export const MAX_BLOB = 16 * 1024;
const MAX_FRAME = 32 * 1024;
const MAX_IDENTITY = 256;

/** The bytes a peer signs to prove it holds its certificate's key. */
export function challengeMessage(nonce, identity) {
  return Buffer.concat([CHALLENGE_CONTEXT, nonce, Buffer.from(identity, 'utf8')]);
}

/** A token bucket: `rate` per second, up to `burst`. */
class Bucket {
  constructor(rate, burst) {
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst;
    this.at = Date.now();
  }

  take(n = 1) {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
}

const DEFAULTS = {
  host: '0.0.0.0',
  port: 8080,
  appId: null,
  maxConnections: 10000,
  registerTimeoutMs: 10000,
  pingIntervalMs: 30000,
  /** Signals per second and burst, per connection. */
  signalRate: 50,
  signalBurst: 100,
  /** Blob bytes per second and burst, per connection. */
  byteRate: 256 * 1024,
  byteBurst: 512 * 1024,
  /** Over this much unsent data to a recipient, new blobs for it are dropped. */
  maxBufferedBytes: 256 * 1024,
  /** Refused messages in a row (rate limit) before the connection is closed. */
  maxStrikes: 200,
};

/**
 * Starts a server. `trustedCAs`: raw 32-byte CA public keys. `adapter`: optional shared
 * presence (see signal/redis.mjs). Resolves with `{ port, close(), stats, connections }`.
 */
export async function startSignalServer(options) {
  const o = { ...DEFAULTS, ...options };
  const trustedCAs = (o.trustedCAs ?? []).map((k) => Buffer.from(k));
  if (trustedCAs.length === 0) throw new TypeError('startSignalServer needs at least one trusted CA public key');
  for (const k of trustedCAs) if (k.length !== 32) throw new TypeError('a trusted CA public key is 32 bytes');

  const peers = new Map(); // identity -> ws
  const stats = { connections: 0, registered: 0, delivered: 0, undeliverable: 0, refused: 0, remoteDelivered: 0 };
  const adapter = o.adapter ?? null;

  const wss = new WebSocketServer({ host: o.host, port: o.port, maxPayload: MAX_FRAME, clientTracking: true });
  await new Promise((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });

  const send = (ws, msg) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(msg));
  };

  const deliverLocal = (to, from, data) => {
    const ws = peers.get(to);
    if (!ws) return 'not-registered';
    if (ws.bufferedAmount > o.maxBufferedBytes) return 'queue-full';
    send(ws, { type: 'signal', from, data });
    return null;
  };

  if (adapter) {
    await adapter.start({
      onSignal: (to, from, data) => {
        if (deliverLocal(to, from, data) === null) stats.remoteDelivered++;
      },
      onReplaced: (identity) => {
        const ws = peers.get(identity);
        if (ws) {
          peers.delete(identity);
          send(ws, { type: 'replaced' });
          ws.close(4009, 'identity registered elsewhere');
        }
      },
    });
  }

  const refuse = (ws, code, message, closeCode = 4001) => {
    stats.refused++;
    send(ws, { type: 'error', code, message });
    ws.close(closeCode, code);
  };

  wss.on('connection', (ws) => {
    stats.connections++;
    if (wss.clients.size > o.maxConnections) {
      refuse(ws, 'server-full', 'too many connections', 1013);
      return;
    }
    const nonce = randomBytes(32);
    const signals = new Bucket(o.signalRate, o.signalBurst);
    const bytes = new Bucket(o.byteRate, o.byteBurst);
    let identity = null;
    let strikes = 0;
    let alive = true;
    const registerTimer = setTimeout(() => {
      if (!identity) refuse(ws, 'register-timeout', 'no registration in time');
    }, o.registerTimeoutMs);
    ws.on('pong', () => {
      alive = true;
    });
    ws.heartbeat = () => {
      if (!alive) return ws.terminate();
      alive = false;
      ws.ping();
    };

    send(ws, { type: 'challenge', version: PROTOCOL_VERSION, nonce: nonce.toString('base64') });

    const onRegister = async (msg) => {
      if (typeof msg.identity !== 'string' || msg.identity.length === 0 || msg.identity.length > MAX_IDENTITY) {
        return refuse(ws, 'bad-request', 'identity must be a non-empty string');
      }
      if (typeof msg.certificate !== 'string' || typeof msg.signature !== 'string') {
        return refuse(ws, 'bad-request', 'certificate and signature are base64 strings');
      }
      let cert;
      try {
        cert = verifyCertificate(Buffer.from(msg.certificate, 'base64'), { trustedCAs, appId: o.appId });
      } catch (e) {
        return refuse(ws, e instanceof CertError ? e.code : 'bad-certificate', e.message);
      }
      if (cert.identity !== msg.identity) {
        return refuse(ws, 'wrong-identity', `the certificate is for ${cert.identity}, not ${msg.identity}`);
      }
      if (!verifySignature(cert.publicKey, challengeMessage(nonce, msg.identity), Buffer.from(msg.signature, 'base64'))) {
        return refuse(ws, 'bad-signature', 'the challenge signature does not verify with the certificate key');
      }
      clearTimeout(registerTimer);
      identity = msg.identity;
      const old = peers.get(identity);
      if (old && old !== ws) {
        send(old, { type: 'replaced' });
        old.close(4009, 'identity registered again');
      }
      peers.set(identity, ws);
      stats.registered++;
      if (adapter) {
        try {
          await adapter.register(identity);
        } catch {
          // Registered here; other servers learn of it when the broker is back (the peer
          // re-registers on reconnect), so a broker outage does not lock peers out.
        }
      }
      send(ws, { type: 'registered', identity });
    };

    const onSignal = async (msg) => {
      const reply = (reason) => {
        stats.undeliverable++;
        const r = { type: 'undeliverable', to: msg.to, reason };
        if (Number.isInteger(msg.id)) r.id = msg.id;
        send(ws, r);
      };
      if (typeof msg.to !== 'string' || msg.to.length > MAX_IDENTITY || typeof msg.data !== 'string') {
        return refuse(ws, 'bad-request', 'signal needs "to" and base64 "data"', 4002);
      }
      const size = Math.floor((msg.data.length * 3) / 4);
      if (size > MAX_BLOB) return reply('too-large');
      if (!signals.take() || !bytes.take(size)) {
        if (++strikes > o.maxStrikes) return refuse(ws, 'rate-limited', 'too many signals', 4008);
        return reply('rate-limited');
      }
      strikes = 0;
      let why = deliverLocal(msg.to, identity, msg.data);
      if (why === 'not-registered' && adapter) {
        try {
          why = (await adapter.publish(msg.to, identity, msg.data)) ? null : 'not-registered';
        } catch {
          // The broker is down: this server's own peers still work; remote ones cannot be told.
          why = 'unavailable';
        }
      }
      if (why) return reply(why);
      stats.delivered++;
    };

    ws.on('message', (raw, isBinary) => {
      let msg;
      try {
        if (isBinary) throw new Error('binary');
        msg = JSON.parse(raw.toString('utf8'));
      } catch {
        return refuse(ws, 'bad-request', 'frames are JSON text', 4002);
      }
      if (msg === null || typeof msg !== 'object') return refuse(ws, 'bad-request', 'frames are JSON objects', 4002);
      const p = msg.type === 'register' ? (identity ? Promise.resolve(refuse(ws, 'bad-request', 'already registered', 4002)) : onRegister(msg))
        : msg.type === 'signal' ? (identity ? onSignal(msg) : Promise.resolve(refuse(ws, 'not-registered', 'register first')))
          : Promise.resolve(refuse(ws, 'bad-request', `unknown message type ${String(msg.type).slice(0, 32)}`, 4002));
      p.catch((e) => refuse(ws, 'server-error', String(e?.message ?? e), 1011));
    });

    ws.on('close', () => {
      clearTimeout(registerTimer);
      if (identity && peers.get(identity) === ws) {
        peers.delete(identity);
        if (adapter) adapter.unregister(identity).catch(() => {});
      }
    });
    ws.on('error', () => {});
  });

  const heartbeat = setInterval(() => {
    for (const ws of wss.clients) ws.heartbeat?.();
  }, o.pingIntervalMs);
  heartbeat.unref();

  return {
    port: wss.address().port,
    stats,
    connections: () => wss.clients.size,
    registered: () => [...peers.keys()],
    async close() {
      clearInterval(heartbeat);
      for (const ws of wss.clients) ws.terminate();
      await new Promise((resolve) => wss.close(resolve));
      if (adapter) await adapter.stop();
    },
  };
}
