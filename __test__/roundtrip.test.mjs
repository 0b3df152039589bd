import test from 'ava';
import { once } from 'node:events';

import { EResult, Identity, SendFlags, ConnectionState } from '../dist/index.mjs';
import { addrOf, collect, endpoint, waitFor } from './helpers.mjs';

test('reliable messages cross loopback both ways on several channels', async (t) => {
  const server = await endpoint();
  const client = await endpoint();
  t.teardown(() => Promise.all([server.close(), client.close()]));

  const request = once(server, 'sessionRequest');
  const channels = [0, 1, 7];
  for (const ch of channels) {
    for (let i = 0; i < 20; i++) {
      t.is(client.sendMessageToUser(addrOf(server), `c${ch}-${i}`, SendFlags.Reliable, ch), EResult.OK);
    }
  }
  const [{ identityRemote }] = await request;
  t.true(identityRemote.equals(client.identity), `${identityRemote} is the client`);
  t.deepEqual(server.receiveMessagesOnChannel(0), [], 'nothing is delivered before accepting');
  t.true(server.acceptSessionWithUser(identityRemote));

  for (const ch of channels) {
    const got = await collect(server, ch, 20);
    t.deepEqual(
      got.map((m) => m.data.toString()),
      Array.from({ length: 20 }, (_, i) => `c${ch}-${i}`),
    );
    for (const m of got) {
      t.is(m.channel, ch);
      t.is(m.size, m.data.length);
      t.true(m.identityPeer.equals(client.identity));
      t.is(m.sendFlags, SendFlags.Reliable);
      t.is(typeof m.messageNumber, 'bigint');
      t.is(typeof m.timeReceived, 'bigint');
    }
  }

  // And back: the client's session was opened by its own send, so it needs no accept.
  const reply = new Uint8Array([1, 2, 3, 250]);
  t.is(server.sendMessageToUser(identityRemote, reply, SendFlags.Reliable, 5), EResult.OK);
  t.is(server.sendMessageToUser(identityRemote, 'unreliable', SendFlags.Unreliable, 6), EResult.OK);
  const [back] = await collect(client, 5, 1);
  t.deepEqual([...back.data], [...reply]);
  const [u] = await collect(client, 6, 1);
  t.is(u.data.toString(), 'unreliable');
  t.is(client.getSessionConnectionInfo(server.identity).state, ConnectionState.Connected);
});

test('the messages event and async iterator deliver what waits', async (t) => {
  const a = await endpoint();
  const b = await endpoint();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', (e) => b.acceptSessionWithUser(e.identityRemote));
  const event = once(b, 'messages');
  a.sendMessageToUser(b.identity, 'first', SendFlags.Reliable, 3);
  t.deepEqual(await event, [3]);
  const it = b.messages(3);
  t.is((await it.next()).value.data.toString(), 'first');
  a.sendMessageToUser(b.identity, 'second', SendFlags.Reliable, 3);
  t.is((await it.next()).value.data.toString(), 'second');
  await b.close();
  t.true((await it.next()).done, 'the iterator ends when the endpoint closes');
});

test('messages up to 512 KiB arrive whole, reliable and unreliable', async (t) => {
  const a = await endpoint();
  const b = await endpoint();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.sendMessageToUser(a.identity, 'hello', SendFlags.Reliable, 9); // b accepts a by sending
  a.setConfig({ sendRateMin: 50_000_000, sendRateMax: 50_000_000 });
  const big = Buffer.alloc(512 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
  t.is(a.sendMessageToUser(b.identity, big, SendFlags.Reliable, 2), EResult.OK);
  const [m] = await collect(b, 2, 1, 15000);
  t.true(m.data.equals(big));
  // The send buffer holds the big message until it is acknowledged.
  await waitFor(() => a.getSessionConnectionInfo(b.identity).status?.sentUnackedReliable === 0, 5000, 'the ack');
  const medium = big.subarray(0, 100_000);
  t.is(a.sendMessageToUser(b.identity, medium, SendFlags.Unreliable, 3), EResult.OK);
  const [u] = await collect(b, 3, 1, 15000);
  t.true(u.data.equals(medium));
  m.release();
  t.throws(() => m.data, { message: /after release/ });
});

test('send results for bad input, and InvalidState after close', async (t) => {
  const a = await endpoint();
  const peer = 'ip:127.0.0.1:9';
  t.is(a.sendMessageToUser('nonsense', 'x'), EResult.InvalidParam);
  t.is(a.sendMessageToUser(peer, 42), EResult.InvalidParam);
  t.is(a.sendMessageToUser(peer, 'x', SendFlags.Reliable, -1), EResult.InvalidParam);
  t.is(a.sendMessageToUser(peer, 'x', SendFlags.Reliable, 1.5), EResult.InvalidParam);
  t.is(a.sendMessageToUser(peer, 'x', SendFlags.Reliable, 2 ** 31), EResult.InvalidParam);
  t.is(a.sendMessageToUser(peer, 'x', 1 << 12), EResult.InvalidParam);
  t.is(a.sendMessageToUser(peer, Buffer.alloc(512 * 1024 + 1)), EResult.InvalidParam);
  t.is(a.sendMessageToUser('str:bob', 'x'), EResult.NoConnection, 'no resolver for a named peer');
  t.throws(() => a.receiveMessagesOnChannel(-1), { instanceOf: RangeError });
  t.throws(() => a.receiveMessagesOnChannel('0'), { instanceOf: TypeError });
  t.throws(() => a.acceptSessionWithUser('bogus'), { instanceOf: TypeError });
  t.false(a.acceptSessionWithUser(peer), 'no pending request');
  await a.close();
  await a.close();
  t.is(a.sendMessageToUser(peer, 'x'), EResult.InvalidState);
  t.is(a.flushMessagesToUser(peer), EResult.InvalidState);
  t.throws(() => a.receiveMessagesOnChannel(0), { message: /closed/ });
});

test('config: Steam defaults, validation all-or-nothing', async (t) => {
  await t.throwsAsync(() => endpoint({ config: { noSuchKey: 1 } }), { instanceOf: TypeError });
  await t.throwsAsync(() => endpoint({ config: { fakePacketLossSend: 101 } }), { instanceOf: RangeError });
  await t.throwsAsync(() => endpoint({ config: { nagleTime: 'x' } }), { instanceOf: TypeError });
  const a = await endpoint({ config: { nagleTime: 1000 } });
  t.teardown(() => a.close());
  const c = a.getConfig();
  t.is(c.nagleTime, 1000);
  t.is(c.timeoutInitial, 10000);
  t.is(c.sendBufferSize, 524288);
  t.is(c.mtuPacketSize, 1300);
  t.throws(() => a.setConfig({ nagleTime: 0, mtuPacketSize: 5 }), { instanceOf: RangeError });
  t.is(a.getConfig().nagleTime, 1000, 'a rejected change changes nothing');
  a.setConfig({ sendBufferSize: 1000 });
  t.is(a.sendMessageToUser('ip:127.0.0.1:9', Buffer.alloc(900), SendFlags.Reliable), EResult.OK);
});

test('a named peer must prove its name: without a certificate the session fails with BadCert', async (t) => {
  const b = await endpoint();
  const a = await endpoint({ resolve: (id) => (id.equals('str:bob') ? `127.0.0.1:${b.localAddress.port}` : undefined) });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const failed = once(a, 'sessionFailed');
  // b is reached at the address the resolver gives, but it has no CA certificate for 'bob'.
  t.is(a.sendMessageToUser(Identity.fromString('bob'), 'hi bob', SendFlags.Reliable, 1), EResult.OK);
  const [{ info }] = await failed;
  t.is(info.endReason, 4003);
  t.true(info.identityRemote.equals('str:bob'));
  t.deepEqual(b.receiveMessagesOnChannel(1), []);
  t.is(a.sendMessageToUser('str:carol', 'x'), EResult.NoConnection, 'no address for carol');
});

test('closeSessionWithUser purges unread messages; the peer sees ClosedByPeer and may restart', async (t) => {
  const a = await endpoint();
  const b = await endpoint();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', (e) => b.acceptSessionWithUser(e.identityRemote));
  a.sendMessageToUser(b.identity, 'one', SendFlags.Reliable, 0);
  await once(b, 'messages');
  t.true(b.closeSessionWithUser(a.identity));
  t.deepEqual(b.receiveMessagesOnChannel(0), []);
  t.is(b.getSessionConnectionInfo(a.identity).state, ConnectionState.None);
  await waitFor(() => a.getSessionConnectionInfo(b.identity).state === ConnectionState.ClosedByPeer, 5000, 'ClosedByPeer');
  t.is(a.sendMessageToUser(b.identity, 'lost?', SendFlags.Reliable, 0), EResult.NoConnection);
  const again = once(b, 'sessionRequest');
  t.is(a.sendMessageToUser(b.identity, 'two', SendFlags.Reliable | SendFlags.AutoRestartBrokenSession, 0), EResult.OK);
  await again;
  const [m] = await collect(b, 0, 1);
  t.is(m.data.toString(), 'two');
});

test('an unreachable peer fails within timeoutInitial, then NoConnection, then AutoRestart', async (t) => {
  const a = await endpoint({ config: { timeoutInitial: 500 } });
  t.teardown(() => a.close());
  // Nobody listens at this port: the handshake is never answered.
  const failed = once(a, 'sessionFailed');
  const started = Date.now();
  t.is(a.sendMessageToUser('ip:127.0.0.1:9', 'hello?', SendFlags.Reliable, 0), EResult.OK);
  const [{ info }] = await failed;
  const took = Date.now() - started;
  t.true(took >= 450 && took < 3000, `failed after ${took} ms`);
  t.is(info.endReason, 5003);
  t.true(info.identityRemote.equals('ip:127.0.0.1:9'));
  t.is(a.getSessionConnectionInfo('ip:127.0.0.1:9').state, ConnectionState.ProblemDetectedLocally);
  t.is(a.sendMessageToUser('ip:127.0.0.1:9', 'again', SendFlags.Reliable, 0), EResult.NoConnection);
  const restarted = a.sendMessageToUser('ip:127.0.0.1:9', 'again', SendFlags.Reliable | SendFlags.AutoRestartBrokenSession, 0);
  t.is(restarted, EResult.OK);
  t.is(a.getSessionConnectionInfo('ip:127.0.0.1:9').state, ConnectionState.Connecting);
});

test('getSessionConnectionInfo reports measured ping, rates and quality', async (t) => {
  const a = await endpoint();
  const b = await endpoint();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', (e) => b.acceptSessionWithUser(e.identityRemote));
  // About 1.5 s of steady traffic, so at least one full measurement window passes.
  for (let i = 0; i < 30; i++) {
    a.sendMessageToUser(b.identity, `m${i}`, SendFlags.ReliableNoNagle, 0);
    await new Promise((r) => setTimeout(r, 50));
  }
  await collect(b, 0, 30);
  const { status } = await waitFor(() => {
    const s = a.getSessionConnectionInfo(b.identity);
    return s.status && s.status.ping >= 0 && s.status.sentUnackedReliable === 0 ? s : undefined;
  }, 5000, 'an acknowledged round trip');
  t.true(status.ping < 100, `ping ${status.ping}`);
  t.true(status.sendRateBytesPerSecond > 0);
  t.true(status.outPacketsPerSec > 5 && status.outPacketsPerSec < 200, `out ${status.outPacketsPerSec}/s`);
  t.true(status.inPacketsPerSec > 0, `in ${status.inPacketsPerSec}/s`);
  t.true(status.outBytesPerSec > 0);
  // Nothing is lost on loopback, but on a loaded machine a late ack can count as a loss.
  t.true(status.connectionQualityRemote > 0.8 && status.connectionQualityRemote <= 1, `remote ${status.connectionQualityRemote}`);
  t.true(status.connectionQualityLocal > 0.8 && status.connectionQualityLocal <= 1, `local ${status.connectionQualityLocal}`);
  t.is(status.pendingReliable, 0);
  t.is(status.pendingUnreliable, 0);
  t.is(status.queueTime, 0);
});

test('close() lingers until queued reliable data is delivered, then the peer sees ClosedByPeer', async (t) => {
  const a = await endpoint({ config: { sendRateMin: 20_000_000, sendRateMax: 20_000_000 } });
  const b = await endpoint();
  t.teardown(() => b.close());
  b.on('sessionRequest', (e) => b.acceptSessionWithUser(e.identityRemote));
  const chunk = Buffer.alloc(50_000, 7);
  for (let i = 0; i < 8; i++) t.is(a.sendMessageToUser(b.identity, chunk, SendFlags.Reliable, 1), EResult.OK);
  const aId = a.identity;
  await a.close();
  const got = await collect(b, 1, 8, 5000);
  t.is(got.length, 8);
  t.true(got.every((m) => m.data.equals(chunk)));
  await waitFor(() => b.getSessionConnectionInfo(aId).state === ConnectionState.ClosedByPeer, 3000, 'ClosedByPeer');
});

test('sendMessages sends a batch in one call, with a result per message', async (t) => {
  const a = await endpoint();
  const b = await endpoint();
  const c = await endpoint();
  t.teardown(() => Promise.all([a.close(), b.close(), c.close()]));
  for (const p of [b, c]) p.on('sessionRequest', (e) => p.acceptSessionWithUser(e.identityRemote));
  const batch = [];
  for (let i = 0; i < 100; i++) {
    batch.push({ identityRemote: i % 2 ? b.identity : c.identity.toString(), data: `m${i}`, sendFlags: SendFlags.Reliable, channel: i % 3 });
  }
  batch.splice(10, 0, { identityRemote: 'nonsense', data: 'x' }, { identityRemote: b.identity, data: 'x', channel: -1 }, null);
  const results = a.sendMessages(batch);
  t.is(results.length, 103);
  t.deepEqual(results.slice(10, 13), [EResult.InvalidParam, EResult.InvalidParam, EResult.InvalidParam]);
  t.is(results.filter((r) => r === EResult.OK).length, 100);
  for (const [peer, parity] of [[b, 1], [c, 0]]) {
    for (let ch = 0; ch < 3; ch++) {
      const want = [];
      for (let i = 0; i < 100; i++) if (i % 2 === parity && i % 3 === ch) want.push(`m${i}`);
      const got = await collect(peer, ch, want.length);
      t.deepEqual(got.map((m) => m.data.toString()), want);
    }
  }
  await a.close();
  t.deepEqual(a.sendMessages([{ identityRemote: b.identity, data: 'late' }]), [EResult.InvalidState]);
});
