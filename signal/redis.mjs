// Shared presence for several signaling servers through Redis pub/sub.
//
// Each registered identity is a channel, `nm:signal:<identity>`, that the server holding its
// connection subscribes to. Sending to an identity not connected here is a PUBLISH on its
// channel; PUBLISH returns how many subscribers got it, so 0 means "not registered anywhere"
// and the sender can be told at once. A server that dies drops its Redis connection and with
// it its subscriptions: presence needs no expiry or cleanup. A new registration first
// publishes a "replaced" notice on the channel, so an older connection for the same identity
// on another server is closed (newest wins, as on one server).
//
// Why Redis pub/sub: at-most-once, fire-and-forget delivery is exactly the best-effort
// contract GNS asks of signaling (lost blobs are retried by the rendezvous layer); presence
// comes for free from subscriber counts; Debian ships redis-server; one Redis handles far
// more tiny messages per second than signaling ever needs, and Redis Cluster's sharded
// pub/sub (SPUBLISH) spreads channels when one instance is not enough. A durable broker
// (Kafka, streams) would keep and replay stale rendezvous blobs nobody wants.
//
// Uses the official client (npm `redis`), loaded only when this adapter is used.
import { randomBytes } from 'node:crypto';

const CHANNEL = 'nm:signal:';

export class RedisPresence {
  /** `url`: redis://host:port. */
  constructor(url, { serverId = randomBytes(8).toString('hex') } = {}) {
    this.url = url;
    this.serverId = serverId;
  }

  async start({ onSignal, onReplaced }) {
    let createClient;
    try {
      ({ createClient } = await import('redis'));
    } catch {
      throw new Error('the Redis adapter needs the `redis` package: npm install redis');
    }
    this.onSignal = onSignal;
    this.onReplaced = onReplaced;
    // No offline queue: while Redis is unreachable, commands fail at once (the server answers
    // "unavailable") instead of piling up without bound until it returns.
    this.pub = createClient({ url: this.url, disableOfflineQueue: true });
    this.sub = this.pub.duplicate();
    for (const c of [this.pub, this.sub]) c.on('error', () => {});
    await Promise.all([this.pub.connect(), this.sub.connect()]);
  }

  listener(identity) {
    return (raw) => {
      let m;
      try {
        m = JSON.parse(raw);
      } catch {
        return;
      }
      if (m.k === 's' && typeof m.from === 'string' && typeof m.data === 'string') this.onSignal(identity, m.from, m.data);
      else if (m.k === 'r' && m.server !== this.serverId) this.onReplaced(identity);
    };
  }

  async register(identity) {
    const ch = CHANNEL + identity;
    await this.pub.publish(ch, JSON.stringify({ k: 'r', server: this.serverId }));
    await this.sub.subscribe(ch, this.listener(identity));
  }

  async unregister(identity) {
    await this.sub.unsubscribe(CHANNEL + identity);
  }

  /** Returns whether some server holds `to`. */
  async publish(to, from, data) {
    const n = await this.pub.publish(CHANNEL + to, JSON.stringify({ k: 's', from, data }));
    return n > 0;
  }

  async stop() {
    // A graceful close while connected; otherwise drop the client (a close to an unreachable
    // Redis would wait for it forever).
    await Promise.allSettled(
      [this.sub, this.pub].filter(Boolean).map((c) => (c.isReady ? c.close() : Promise.resolve(c.destroy()))),
    );
  }
}
