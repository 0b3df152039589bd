// The per-call send's native path (binding/src/fast_send.rs: a plain N-API function bound to
// the endpoint, reading its arguments itself): views into larger buffers, pooled Buffers and
// strings arrive byte for byte; bad arguments are InvalidParam, as on the batch path.
import test from 'ava';

import { ConnectionState, EResult, NetworkingSockets, SendFlags } from '../dist/index.mjs';
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

test('the connection API per-call send: a view with an offset arrives byte for byte; message numbers count up', async (t) => {
  const server = await NetworkingSockets.create();
  const client = await NetworkingSockets.create();
  t.teardown(() => Promise.all([server.close(), client.close()]));
  const listen = server.createListenSocketIP('127.0.0.1:0');
  const { port } = server.getListenSocketAddress(listen);
  let serverConn;
  server.on('connectionStatusChanged', (e) => {
    if (e.info.state === ConnectionState.Connecting) {
      serverConn = e.conn;
      server.acceptConnection(e.conn);
    }
  });
  const conn = client.connectByIPAddress(`127.0.0.1:${port}`);
  const big = new Uint8Array(2048).map((_, i) => (i * 7) & 0xff);
  t.deepEqual(client.sendMessageToConnection(conn, big.subarray(100, 140), SendFlags.Reliable, 0), { result: EResult.OK, messageNumber: 1n });
  t.deepEqual(client.sendMessageToConnection(conn, big.subarray(1), SendFlags.Reliable, 0), { result: EResult.OK, messageNumber: 2n });
  t.is(client.sendMessageToConnection(conn, new Uint16Array(2), SendFlags.Reliable, 0).result, EResult.InvalidParam);
  const got = [];
  const deadline = Date.now() + 5000;
  while (got.length < 2 && Date.now() < deadline) {
    if (serverConn !== undefined) got.push(...server.receiveMessagesOnConnection(serverConn, 16));
    await new Promise((r) => setTimeout(r, 5));
  }
  t.is(got.length, 2);
  t.deepEqual(new Uint8Array(got[0].data), big.subarray(100, 140));
  t.deepEqual(new Uint8Array(got[1].data), big.subarray(1));
});
