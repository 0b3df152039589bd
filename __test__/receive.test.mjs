// Receive semantics (issue 17): the `messages` event is re-armed until the queue is empty
// and announced to listeners added late (bug 2); a throwing listener loses nothing (bug 2);
// an unread channel that stalls the session is named, by an event and in the status (bug 4).
import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { EResult, SendFlags } from '../dist/index.mjs';
import { addrOf, collect, endpoint, waitFor } from './helpers.mjs';

/** Waits until every reliable byte `from` sent to `to` is acknowledged (so it sits in to's queue). */
async function delivered(from, to) {
  await waitFor(() => {
    const s = from.getSessionConnectionInfo(addrOf(to)).status;
    return s !== null && s.pendingReliable === 0 && s.sentUnackedReliable === 0;
  }, 10_000, 'all reliable data acknowledged');
}

test('messages that arrived before any listener are announced to it, and 64 per event drains them all', async (t) => {
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  const n = 300;
  for (let i = 0; i < n; i++) t.is(a.sendMessageToUser(addrOf(b), `m${i}`, SendFlags.Reliable, 1), EResult.OK);
  await delivered(a, b);
  // All 300 wait on channel 1; nobody listened when they arrived.
  const got = [];
  let events = 0;
  b.on('messages', (ch) => {
    events++;
    for (const m of b.receiveMessagesOnChannel(ch)) got.push(m.data.toString()); // 64, the default
  });
  await waitFor(() => got.length === n, 5000, `${n} messages (got ${got.length})`);
  t.deepEqual(got, Array.from({ length: n }, (_, i) => `m${i}`));
  t.true(events >= Math.ceil(n / 64), `${events} events`);
});

test('a burst read 64 per event while listening is drained to empty', async (t) => {
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  const got = [];
  b.on('messages', (ch) => {
    for (const m of b.receiveMessagesOnChannel(ch, 64)) got.push(m);
  });
  const n = 900;
  for (let i = 0; i < n; i++) a.sendMessageToUser(addrOf(b), Buffer.alloc(100, i & 0xff), SendFlags.Reliable, 4);
  await waitFor(() => got.length === n, 10_000, `${n} messages (got ${got.length})`);
  t.is(got.length, n);
  // Nothing is left behind, and no event keeps firing for an empty queue.
  await new Promise((r) => setTimeout(r, 50));
  t.deepEqual(b.receiveMessagesOnChannel(4), []);
});

test('a throwing listener loses no event of the batch (child process, 10 rounds)', async (t) => {
  t.timeout(30_000);
  const script = fileURLToPath(new URL('./fixtures/throwing-listener.mjs', import.meta.url));
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('hung');
    }, 25_000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  t.is(code, 0, `${out}\n${err}`);
  const r = JSON.parse(out.trim().split('\n').pop());
  t.is(r.rounds, 10);
  t.is(r.secondChannelEvents, 10, 'the event after the throwing one arrived every round');
  t.is(r.secondListenerSawFirst, 10, 'the listener after the throwing one ran too');
  t.is(r.uncaught, 10, 'each exception was still reported as uncaught');
});

test("with an 'error' listener, a throwing listener's exception goes there and the others still run", async (t) => {
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  const errors = [];
  b.on('error', (e) => errors.push(e));
  b.on('messages', () => {
    throw new Error('listener bug');
  });
  const got = [];
  b.on('messages', (ch) => got.push(...b.receiveMessagesOnChannel(ch, 256)));
  a.sendMessageToUser(addrOf(b), 'x', SendFlags.ReliableNoNagle, 2);
  await waitFor(() => got.length === 1, 5000, 'the message');
  t.true(errors.length >= 1);
  t.is(errors[0].message, 'listener bug');
});

test('an unread channel that fills the receive limit is named (event, status, text); reading it lets everything through', async (t) => {
  t.timeout(30_000);
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  const blocked = [];
  b.on('receiveBlocked', (e) => blocked.push(e));
  // The session is accepted first: a flood that arrives before the accept stalls it on the
  // held messages instead (channel null), then is re-announced as channel 7's once accepted.
  a.sendMessageToUser(addrOf(b), 'first', SendFlags.ReliableNoNagle, 0);
  await collect(b, 0, 1);
  const n = 1100;
  for (let i = 0; i < n; i++) t.is(a.sendMessageToUser(addrOf(b), `u${i}`, SendFlags.Reliable, 7), EResult.OK);
  await waitFor(() => blocked.length > 0, 10_000, 'a receiveBlocked event');
  t.is(blocked.length, 1);
  t.true(blocked[0].identityRemote.equals(addrOf(a)));
  t.is(blocked[0].channel, 7);
  t.true(blocked[0].messages >= 1000, `${blocked[0].messages}`);
  // Channel 0 waits behind channel 7, and the status says so.
  t.is(a.sendMessageToUser(addrOf(b), 'hello', SendFlags.Reliable, 0), EResult.OK);
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(b.receiveMessagesOnChannel(0), []);
  const info = b.getSessionConnectionInfo(addrOf(a));
  t.is(info.receiveBlocked?.channel, 7);
  t.true(info.stats.unreadMessages >= 1000);
  t.regex(b.getDetailedConnectionStatus(addrOf(a)), /STALLED: channel 7/);
  const stats = b.getEndpointStats();
  t.is(stats.sessionsReceiveBlocked, 1);
  t.is(stats.receiveStalls, 1);
  // Reading channel 7 lets the rest of it, and channel 0, through: nothing was dropped.
  const got7 = await collect(b, 7, n, 20_000);
  t.deepEqual(got7.map((m) => m.data.toString()), Array.from({ length: n }, (_, i) => `u${i}`));
  const [hello] = await collect(b, 0, 1, 10_000);
  t.is(hello.data.toString(), 'hello');
  t.is(b.getSessionConnectionInfo(addrOf(a)).receiveBlocked, null);
});
