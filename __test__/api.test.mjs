import test from 'ava';
import { ConnectionState, EResult, SendFlags } from '../dist/index.mjs';
import { collect, endpoint, waitFor } from './helpers.mjs';

async function connectedPair(t, options = {}) {
  const a = await endpoint(options);
  const b = await endpoint(options);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', (e) => b.acceptSessionWithUser(e.identityRemote));
  a.sendMessageToUser(b.identity, 'hello', SendFlags.Reliable, 99);
  await collect(b, 99, 1);
  await waitFor(() => a.getSessionConnectionInfo(b.identity).state === ConnectionState.Connected, 5000, 'connected');
  return [a, b];
}

test('NoDelay: Ignored while the session is not up yet, sent at once when it is', async (t) => {
  const a = await endpoint();
  const b = await endpoint();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  t.is(a.sendMessageToUser(b.identity, 'too early', SendFlags.UnreliableNoDelay, 0), EResult.Ignored);
  b.on('sessionRequest', (e) => b.acceptSessionWithUser(e.identityRemote));
  a.sendMessageToUser(b.identity, 'open', SendFlags.Reliable, 1);
  await collect(b, 1, 1);
  await waitFor(() => a.getSessionConnectionInfo(b.identity).state === ConnectionState.Connected, 5000, 'connected');
  t.is(a.sendMessageToUser(b.identity, 'now', SendFlags.UnreliableNoDelay, 0), EResult.OK);
  const [m] = await collect(b, 0, 1);
  t.is(m.data.toString(), 'now');
});

test('flushMessagesToUser sends what Nagle holds', async (t) => {
  // 20 ms of Nagle: without the flush the message would wait for it.
  const [a, b] = await connectedPair(t, { config: { nagleTime: 20000 } });
  let heldFor = Infinity;
  for (let i = 0; i < 5; i++) {
    const started = performance.now();
    t.is(a.sendMessageToUser(b.identity, `m${i}`, SendFlags.Unreliable, 3), EResult.OK);
    t.is(a.flushMessagesToUser(b.identity), EResult.OK);
    await collect(b, 3, 1);
    heldFor = Math.min(heldFor, performance.now() - started);
  }
  t.true(heldFor < 15, `best of five took ${heldFor.toFixed(1)} ms (Nagle is 20 ms)`);
  t.is(a.flushMessagesToUser('ip:127.0.0.1:9'), EResult.NoConnection);
  t.is(a.flushMessagesToUser('not an identity'), EResult.InvalidParam);
});

test('closeChannelWithUser purges that channel; the last open channel closes the session', async (t) => {
  const [a, b] = await connectedPair(t);
  a.sendMessageToUser(b.identity, 'c1', SendFlags.Reliable, 1);
  a.sendMessageToUser(b.identity, 'c2', SendFlags.Reliable, 2);
  // Let both arrive (unread) before closing one of the channels.
  await new Promise((r) => setTimeout(r, 100));
  t.true(b.closeChannelWithUser(a.identity, 1));
  t.deepEqual(b.receiveMessagesOnChannel(1), [], 'unread messages of the closed channel are gone');
  t.is(b.receiveMessagesOnChannel(2)[0]?.data.toString(), 'c2', 'other channels keep theirs');
  t.is(b.getSessionConnectionInfo(a.identity).state, ConnectionState.Connected);
  // Channels used with a: 99 (the first message), 1 (closed), 2.
  t.true(b.closeChannelWithUser(a.identity, 2));
  t.true(b.closeChannelWithUser(a.identity, 99));
  t.is(b.getSessionConnectionInfo(a.identity).state, ConnectionState.None, 'the last channel closed the session');
  t.false(b.closeChannelWithUser(a.identity, 5), 'no session left');
  const closed = await waitFor(() => a.getSessionConnectionInfo(b.identity).state === ConnectionState.ClosedByPeer, 3000, 'peer told');
  t.true(closed);
});

test('a reliable flood into a reader that does not read is held back, not lost', async (t) => {
  const [a, b] = await connectedPair(t, { config: { recvBufferMessages: 50, sendRateMin: 10_000_000, sendRateMax: 10_000_000 } });
  let sent = 0;
  const deadline = Date.now() + 3000;
  while (sent < 400 && Date.now() < deadline) {
    const r = a.sendMessageToUser(b.identity, `n${sent}`, SendFlags.Reliable, 4);
    if (r === EResult.OK) sent++;
    else await new Promise((res) => setTimeout(res, 5));
  }
  await new Promise((r) => setTimeout(r, 300));
  // b has not read: its queue holds at most its limit plus one packet's worth.
  const backlog = a.getSessionConnectionInfo(b.identity).status;
  t.true(backlog.pendingReliable + backlog.sentUnackedReliable > 0, 'the sender still holds data');
  const got = await collect(b, 4, sent, 10_000);
  t.deepEqual(got.map((m) => m.data.toString()), Array.from({ length: sent }, (_, i) => `n${i}`));
  t.is(a.getSessionConnectionInfo(b.identity).state, ConnectionState.Connected);
});
