// The per-call send's native path (binding/src/fast_send.rs: a plain N-API function bound to
// the endpoint, reading its arguments itself): views into larger buffers, pooled Buffers and
// strings arrive byte for byte; bad arguments are InvalidParam, as on the batch path.
import test from 'ava';

import { EResult, SendFlags } from '../dist/index.mjs';
import { addrOf, collect, endpoint } from './helpers.mjs';

test('views with a byte offset, pooled Buffers and strings arrive byte for byte', async (t) => {
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  const big = new Uint8Array(4096).map((_, i) => i & 0xff);
  const sent = [
    big.subarray(1000, 1017), // offset into a larger ArrayBuffer
    Buffer.from('pooled: a small Buffer lives in a shared slab at an offset'),
    new Uint8Array(new ArrayBuffer(64), 32, 8).fill(9),
    big, // 4 KiB: fragmented over several packets
  ];
  for (const d of sent) t.is(a.sendMessageToUser(addrOf(b), d, SendFlags.Reliable, 3), EResult.OK);
  t.is(a.sendMessageToUser(addrOf(b), 'text é', SendFlags.Reliable, 3), EResult.OK);
  const got = await collect(b, 3, sent.length + 1);
  sent.forEach((d, i) => t.deepEqual(new Uint8Array(got[i].data), new Uint8Array(d), `message ${i}`));
  t.is(got[sent.length].data.toString(), 'text é');
});

test('bad flags, channels and payload types are InvalidParam with a reason', async (t) => {
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  t.is(a.sendMessageToUser(addrOf(b), 'x', 1 << 20, 0), EResult.InvalidParam);
  t.truthy(a.lastError());
  t.is(a.sendMessageToUser(addrOf(b), 'x', SendFlags.Reliable, -1), EResult.InvalidParam);
  t.is(a.sendMessageToUser(addrOf(b), new Uint16Array(4), SendFlags.Reliable, 0), EResult.InvalidParam);
  t.is(a.sendMessageToUser(addrOf(b), 'ok', SendFlags.Reliable, 0), EResult.OK);
});
