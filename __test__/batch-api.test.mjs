// The object-free batch APIs: one buffer plus offsets out, one MessageBatch in.
import test from 'ava';
import { EResult, MessageBatch, SendFlags } from '../dist/index.mjs';
import { addrOf, endpoint, waitFor } from './helpers.mjs';

test('sendMessagesFromBuffer and receiveBatchOnChannel move many messages without an object each', async (t) => {
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  const n = 500;
  const parts = Array.from({ length: n }, (_, i) => Buffer.from(`message ${i}`.padEnd(10 + (i % 7), '.')));
  const offsets = new Uint32Array(n + 1);
  for (let i = 0; i < n; i++) offsets[i + 1] = offsets[i] + parts[i].length;
  const data = Buffer.concat(parts);
  const results = a.sendMessagesFromBuffer(addrOf(b), data, offsets, SendFlags.Reliable, 3);
  t.is(results.length, n);
  t.true(results.every((r) => r === EResult.OK));
  const got = [];
  await waitFor(() => {
    const batch = b.receiveBatchOnChannel(3, 128);
    t.true(batch instanceof MessageBatch);
    for (let i = 0; i < batch.count; i++) {
      t.is(batch.peer(i).toString(), addrOf(a));
      t.is(batch.sendFlags(i), SendFlags.Reliable);
      t.is(batch.payload(i).length, batch.size(i));
      got.push(batch.payload(i).toString());
    }
    return got.length >= n;
  });
  t.deepEqual(got, parts.map(String));
  const empty = b.receiveBatchOnChannel(3);
  t.is(empty.count, 0);
  t.throws(() => empty.payload(0), { instanceOf: RangeError });
});

test('sendMessagesFromBuffer refuses bad offsets and bad peers as the other send calls do', async (t) => {
  const a = await endpoint();
  t.teardown(() => a.close());
  const data = Buffer.alloc(10);
  t.throws(() => a.sendMessagesFromBuffer('ip:127.0.0.1:9', data, [0, 5]), { instanceOf: TypeError });
  t.throws(() => a.sendMessagesFromBuffer('ip:127.0.0.1:9', data, Uint32Array.from([0, 11])), { instanceOf: RangeError });
  t.throws(() => a.sendMessagesFromBuffer('ip:127.0.0.1:9', data, Uint32Array.from([0, 6, 5])), { instanceOf: RangeError });
  t.deepEqual([...a.sendMessagesFromBuffer('not an identity', data, Uint32Array.from([0, 5, 10]))], [EResult.InvalidParam, EResult.InvalidParam]);
  await a.close();
  t.deepEqual([...a.sendMessagesFromBuffer('ip:127.0.0.1:9', data, Uint32Array.from([0, 10]))], [EResult.InvalidState]);
});

test('a batch from many senders names each message by its own sender', async (t) => {
  const senders = await Promise.all(Array.from({ length: 6 }, () => endpoint()));
  const b = await endpoint();
  t.teardown(() => Promise.all([b.close(), ...senders.map((s) => s.close())]));
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  // Every sender's messages name it; the receiver reads them all before looking, so one
  // batch holds many senders, in runs and interleaved.
  const per = 40;
  for (let i = 0; i < per; i++) {
    for (const [k, s] of senders.entries()) {
      t.is(s.sendMessageToUser(addrOf(b), Buffer.from(`${k}:${addrOf(s)}:${i}`), SendFlags.ReliableNoNagle, 2), EResult.OK);
    }
  }
  const total = per * senders.length;
  // Every message acknowledged: all of them wait in the receiver's queue before it reads.
  await waitFor(
    () =>
      senders.every((s) => {
        const st = s.getSessionConnectionInfo(addrOf(b)).status;
        return st !== null && st.pendingReliable === 0 && st.sentUnackedReliable === 0;
      }),
    5000,
    'every message acknowledged',
  );
  const byPeer = new Map();
  let seen = 0;
  let batches = 0;
  let mixed = 0;
  await waitFor(() => {
    const batch = b.receiveBatchOnChannel(2, 256);
    if (batch.count > 0) batches++;
    const names = new Set();
    for (let i = 0; i < batch.count; i++) {
      // `<k>:<sender address, which has colons>:<seq>`
      const text = batch.payload(i).toString();
      const from = text.slice(text.indexOf(':') + 1, text.lastIndexOf(':'));
      const seq = text.slice(text.lastIndexOf(':') + 1);
      t.is(batch.peer(i).toString(), from, 'the sender named in the batch is the one that sent it');
      names.add(from);
      const list = byPeer.get(from) ?? [];
      list.push(Number(seq));
      byPeer.set(from, list);
      seen++;
    }
    if (names.size > 1) mixed++;
    return seen >= total;
  });
  t.is(byPeer.size, senders.length);
  for (const list of byPeer.values()) t.deepEqual(list, Array.from({ length: per }, (_, i) => i), 'in order, once each');
  t.true(mixed > 0, `some batch held more than one sender (${batches} batches)`);
});
