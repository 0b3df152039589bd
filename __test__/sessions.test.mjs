// Session life cycle over real loopback: two processes, simultaneous first sends, the
// session request reposted while unanswered, and the idle timeout.
import test from 'ava';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ConnectionState, EResult, SendFlags } from '../dist/index.mjs';
import { addrOf, collect, endpoint, waitFor } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('two Node processes exchange reliable messages both ways; the child exits on its own', async (t) => {
  t.timeout(40_000);
  const parent = await endpoint();
  t.teardown(() => parent.close());
  const count = 200;
  const requests = [];
  parent.on('sessionRequest', (e) => {
    requests.push(e.identityRemote);
    parent.acceptSessionWithUser(e.identityRemote);
  });
  const child = fork(path.join(here, 'fixtures/peer.mjs'), [addrOf(parent), String(count)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  t.teardown(() => {
    clearTimeout(killer);
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const exited = once(child, 'exit');
  const report = once(child, 'message');

  const got = await collect(parent, 0, count, 20_000);
  t.deepEqual(
    got.map((m) => m.data.toString()),
    Array.from({ length: count }, (_, i) => `child-${i}`),
  );
  const childId = got[0].identityPeer;
  t.is(requests.length, 1, 'one session request');
  t.true(requests[0].equals(childId));
  for (let i = 0; i < count; i++) {
    t.is(parent.sendMessageToUser(childId, `parent-${i}`, SendFlags.Reliable, 1), EResult.OK);
  }
  const [msg] = await report;
  t.is(msg.problem, null);
  t.true(childId.equals(msg.identity), `the child is ${msg.identity}, messages came from ${childId}`);
  t.deepEqual(msg.got, Array.from({ length: count }, (_, i) => `parent-${i}`));
  const [code, signal] = await exited;
  t.is(signal, null, 'the child was not killed');
  t.is(code, 0);
});

test('simultaneous first sends end with one session each way and every message delivered', async (t) => {
  t.timeout(20_000);
  const a = await endpoint();
  const b = await endpoint();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const unexpected = [];
  for (const [name, p] of [['a', a], ['b', b]]) {
    // A sessionRequest can be posted if one side's whole handshake lands before the other
    // side's first send runs (a few tens of µs on loopback); the send then accepts it.
    // What must never happen is a failure, or a second session.
    p.on('sessionFailed', (e) => unexpected.push(`${name}: sessionFailed ${e.info.endReason}`));
  }
  const n = 50;
  // Both send before either driver has had a chance to receive anything.
  for (let i = 0; i < n; i++) {
    t.is(a.sendMessageToUser(b.identity, `a${i}`, SendFlags.Reliable, 0), EResult.OK);
    t.is(b.sendMessageToUser(a.identity, `b${i}`, SendFlags.Reliable, 0), EResult.OK);
  }
  const atB = await collect(b, 0, n, 10_000);
  const atA = await collect(a, 0, n, 10_000);
  t.deepEqual(atB.map((m) => m.data.toString()), Array.from({ length: n }, (_, i) => `a${i}`));
  t.deepEqual(atA.map((m) => m.data.toString()), Array.from({ length: n }, (_, i) => `b${i}`));
  t.true(atB.every((m) => m.identityPeer.equals(a.identity)));
  t.true(atA.every((m) => m.identityPeer.equals(b.identity)));
  // Both sides stay on that one session: more messages flow on it, nothing restarts.
  a.sendMessageToUser(b.identity, 'after', SendFlags.Reliable, 0);
  b.sendMessageToUser(a.identity, 'after', SendFlags.Reliable, 0);
  t.is((await collect(b, 0, 1))[0].data.toString(), 'after');
  t.is((await collect(a, 0, 1))[0].data.toString(), 'after');
  t.is(a.getSessionConnectionInfo(b.identity).state, ConnectionState.Connected);
  t.is(b.getSessionConnectionInfo(a.identity).state, ConnectionState.Connected);
  t.deepEqual(unexpected, []);
});

test('an unanswered session request is posted again while the peer keeps sending', async (t) => {
  t.timeout(20_000);
  const a = await endpoint();
  const b = await endpoint();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const requests = [];
  b.on('sessionRequest', (e) => requests.push({ at: Date.now(), id: e.identityRemote }));
  const start = Date.now();
  let i = 0;
  while (Date.now() - start < 3200) {
    a.sendMessageToUser(b.identity, `knock ${i++}`, SendFlags.ReliableNoNagle, 0);
    await sleep(100);
  }
  t.true(requests.length >= 2, `${requests.length} session requests in ~3 s`);
  t.true(requests.length <= 5, `${requests.length} session requests in ~3 s (repost interval is 1 s)`);
  t.true(requests.every((r) => r.id.equals(a.identity)));
  for (let k = 1; k < requests.length; k++) {
    t.true(requests[k].at - requests[k - 1].at >= 900, `requests ${k - 1} and ${k} are a second apart`);
  }
  t.deepEqual(b.receiveMessagesOnChannel(0), [], 'nothing delivered before accepting');
  // Accepting at last delivers what was held, in order.
  t.true(b.acceptSessionWithUser(a.identity));
  const got = await collect(b, 0, i, 10_000);
  t.deepEqual(got.map((m) => m.data.toString()), Array.from({ length: i }, (_, k) => `knock ${k}`));
});

test('an idle session disappears silently after messagesSessionIdleTimeout', async (t) => {
  t.timeout(20_000);
  const config = { messagesSessionIdleTimeout: 500 };
  const a = await endpoint({ config });
  const b = await endpoint({ config });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const failed = [];
  a.on('sessionFailed', (e) => failed.push(`a: ${e.info.endReason}`));
  b.on('sessionFailed', (e) => failed.push(`b: ${e.info.endReason}`));
  b.on('sessionRequest', (e) => b.acceptSessionWithUser(e.identityRemote));
  a.sendMessageToUser(b.identity, 'hi', SendFlags.ReliableNoNagle, 0);
  await collect(b, 0, 1);
  b.sendMessageToUser(a.identity, 'hi back', SendFlags.ReliableNoNagle, 0);
  await collect(a, 0, 1);
  t.is(a.getSessionConnectionInfo(b.identity).state, ConnectionState.Connected);
  const idleFrom = Date.now();
  await waitFor(
    () =>
      a.getSessionConnectionInfo(b.identity).state === ConnectionState.None &&
      b.getSessionConnectionInfo(a.identity).state === ConnectionState.None,
    5000,
    'both sessions to time out',
  );
  t.true(Date.now() - idleFrom >= 400, `gone after ${Date.now() - idleFrom} ms`);
  await sleep(200);
  t.deepEqual(failed, [], 'no sessionFailed for an idle close');
  // A new send starts a new session.
  const again = once(b, 'sessionRequest');
  t.is(a.sendMessageToUser(b.identity, 'again', SendFlags.ReliableNoNagle, 0), EResult.OK);
  await again;
  t.is((await collect(b, 0, 1))[0].data.toString(), 'again');
});
