// The fake-network knobs (fakePacket*) applied by the driver to real datagrams on loopback:
// the transport must still deliver reliable messages exactly once and in order, unreliable
// ones intact or not at all, and lag must show in round-trip times.
import test from 'ava';

import { EResult, SendFlags } from '../dist/index.mjs';
import { collect, endpoint, waitFor } from './helpers.mjs';

const FAST = { sendRateMin: 10_000_000, sendRateMax: 10_000_000 };

/** Two endpoints on loopback, b accepting a; both closed after the test. */
async function pair(t, configA = {}, configB = {}) {
  const a = await endpoint({ config: { ...FAST, ...configA } });
  const b = await endpoint({ config: { ...FAST, ...configB } });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', (e) => b.acceptSessionWithUser(e.identityRemote));
  return [a, b];
}

/** Resolves once `count()` has not changed for `quietMs` (or `maxMs` passed). */
async function settle(count, quietMs = 400, maxMs = 10_000) {
  const deadline = Date.now() + maxMs;
  let last = count();
  let since = Date.now();
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    const now = count();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) {
      return;
    }
  }
}

test('3,000 reliable messages on 4 channels survive loss, duplication and reordering exactly once, in order', async (t) => {
  t.timeout(45_000);
  const knobs = {
    fakePacketLossSend: 20,
    fakePacketDupSend: 10,
    fakePacketDupRecv: 10,
    fakePacketReorderSend: 10,
    fakePacketReorderRecv: 10,
    fakePacketReorderTime: 15,
    fakePacketDupTimeMax: 10,
    recvBufferMessages: 10_000,
    sendBufferSize: 4 * 1024 * 1024,
  };
  const [a, b] = await pair(t, knobs, knobs);
  const channels = [0, 1, 2, 3];
  const perChannel = 750;
  for (let i = 0; i < perChannel; i++) {
    for (const ch of channels) {
      const r = a.sendMessageToUser(b.identity, `ch${ch}#${i}:${'x'.repeat(i % 97)}`, SendFlags.Reliable, ch);
      t.is(r, EResult.OK, `send ${ch}/${i}`);
      if (r !== EResult.OK) return;
    }
  }
  const got = new Map(channels.map((ch) => [ch, []]));
  const total = () => [...got.values()].reduce((n, l) => n + l.length, 0);
  await waitFor(
    () => {
      for (const ch of channels) got.get(ch).push(...b.receiveMessagesOnChannel(ch, 1024));
      return total() >= channels.length * perChannel;
    },
    40_000,
    'all 3,000 messages',
  ).catch((e) => t.fail(`${e.message}: got ${total()}`));
  // Late duplicates must not surface as extra messages.
  await new Promise((r) => setTimeout(r, 300));
  for (const ch of channels) got.get(ch).push(...b.receiveMessagesOnChannel(ch, 1024));
  for (const ch of channels) {
    const texts = got.get(ch).map((m) => m.data.toString());
    const want = Array.from({ length: perChannel }, (_, i) => `ch${ch}#${i}:${'x'.repeat(i % 97)}`);
    t.is(texts.length, perChannel, `channel ${ch} count`);
    t.deepEqual(texts, want, `channel ${ch} exactly once, in order`);
  }
});

test('unreliable messages under 20% fake loss: about 80% arrive, all intact', async (t) => {
  t.timeout(30_000);
  const [a, b] = await pair(t, { sendBufferSize: 4 * 1024 * 1024 }, { recvBufferMessages: 10_000 });
  // A reliable warm-up so the session is up (and accepted) before the unreliable burst; the
  // loss is switched on afterwards, live.
  t.is(a.sendMessageToUser(b.identity, 'hello', SendFlags.ReliableNoNagle, 0), EResult.OK);
  await collect(b, 0, 1, 10_000);
  a.setConfig({ fakePacketLossSend: 20 });

  // 200-byte messages, about six to a packet: a lost packet takes its messages with it, and
  // the one message straddling into the next packet, so a little over 20 % are lost.
  // (Large messages straddle packets much more often: 1000-byte ones lose about a third.)
  const n = 3000;
  const payload = (i) => {
    const buf = Buffer.alloc(200);
    buf.writeUInt32LE(i, 0);
    for (let j = 4; j < buf.length; j++) buf[j] = (i * 7 + j) & 0xff;
    return buf;
  };
  for (let i = 0; i < n; i++) {
    t.is(a.sendMessageToUser(b.identity, payload(i), SendFlags.Unreliable, 1), EResult.OK);
    if (i % 300 === 299) await new Promise((r) => setTimeout(r, 10));
  }
  const got = [];
  await settle(() => {
    got.push(...b.receiveMessagesOnChannel(1, 1024));
    return got.length;
  });
  const seen = new Set();
  let intact = 0;
  for (const m of got) {
    const i = m.data.readUInt32LE(0);
    if (i < n && m.data.equals(payload(i))) intact++;
    seen.add(i);
  }
  t.is(intact, got.length, 'every message that arrived is intact');
  t.is(seen.size, got.length, 'no duplicates without the dup knob');
  const share = got.length / n;
  t.log(`${got.length} of ${n} arrived`);
  t.true(share > 0.65 && share < 0.9, `${got.length} of ${n} arrived`);
});

test('fakePacketLagSend shows in the round-trip time, live through setConfig', async (t) => {
  t.timeout(30_000);
  const [a, b] = await pair(t);
  b.on('messages', (ch) => {
    for (const m of b.receiveMessagesOnChannel(ch)) b.sendMessageToUser(m.identityPeer, m.data, SendFlags.ReliableNoNagle, ch);
  });
  async function rtt() {
    const times = [];
    for (let i = 0; i < 5; i++) {
      const start = process.hrtime.bigint();
      a.sendMessageToUser(b.identity, `ping${i}`, SendFlags.ReliableNoNagle, 0);
      const [m] = await collect(a, 0, 1, 10_000);
      t.is(m.data.toString(), `ping${i}`);
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    return Math.min(...times);
  }
  const before = await rtt();
  t.true(before < 40, `loopback round trip ${before} ms`);

  a.setConfig({ fakePacketLagSend: 50 });
  const after = await rtt();
  t.true(after >= 49, `round trip with 50 ms lag ${after} ms`);
  t.true(after < 1000, `round trip with 50 ms lag ${after} ms`);
  // The measured ping is smoothed: keep the traffic going until it has converged.
  let ping = -1;
  for (let i = 0; i < 60 && ping < 45; i++) {
    await rtt();
    ping = a.getSessionConnectionInfo(b.identity).status?.ping ?? -1;
  }
  t.true(ping >= 45 && ping < 1000, `ping ${ping}`);

  a.setConfig({ fakePacketLagSend: 0 });
  const off = await rtt();
  t.true(off < 40, `round trip after turning lag off ${off} ms`);
});

test('fakePacketLagRecv delays what arrives', async (t) => {
  t.timeout(20_000);
  const [a, b] = await pair(t, {}, { fakePacketLagRecv: 80 });
  const start = Date.now();
  a.sendMessageToUser(b.identity, 'late', SendFlags.ReliableNoNagle, 0);
  const [m] = await collect(b, 0, 1, 10_000);
  t.is(m.data.toString(), 'late');
  t.true(Date.now() - start >= 78, `arrived after ${Date.now() - start} ms`);
});

test('fakePacketLossRecv 100 cuts a peer off until it is set back to 0', async (t) => {
  t.timeout(20_000);
  const [a, b] = await pair(t, {}, { fakePacketLossRecv: 100 });
  a.sendMessageToUser(b.identity, 'through', SendFlags.Reliable, 0);
  await new Promise((r) => setTimeout(r, 300));
  t.deepEqual(b.receiveMessagesOnChannel(0), [], 'nothing gets in');
  b.setConfig({ fakePacketLossRecv: 0 });
  // The retransmission timer brings the message in once the knob is off.
  const [m] = await collect(b, 0, 1, 10_000);
  t.is(m.data.toString(), 'through');
});
