// Receiving on the JS thread (binding/src/uv_reader.rs, netdriver/src/caller_receive.rs):
// while JS is idle it reads the sockets itself; while it is busy the driver thread reads
// them, and nothing is lost or overtaken on either path. No timed assertions: each busy
// phase lasts until the condition it waits for holds (bounded only as a test timeout).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { ConnectionState, EResult, NetworkingSockets, SendFlags } from '../dist/index.mjs';
import { addrOf, endpoint, waitFor } from './helpers.mjs';

const dist = fileURLToPath(new URL('../dist/index.mjs', import.meta.url));

/** Blocks the JS thread until `cond()` holds (or `ms` passes: then the test fails). */
function busyUntil(cond, ms, what) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`JS thread busy for ${ms} ms and still not: ${what}`);
  }
}

/** `rounds` ReliableNoNagle round trips from `a` to `b` and back on channel 0. */
async function pingPong(a, b, rounds) {
  let answered = 0;
  b.on('messages', (ch) => {
    for (const m of b.receiveMessagesOnChannel(ch, 64)) b.sendMessageToUser(m.identityPeer, m.data, SendFlags.ReliableNoNagle, 0);
  });
  let next;
  a.on('messages', (ch) => {
    for (const m of a.receiveMessagesOnChannel(ch, 64)) {
      if (m.data.readUInt32LE(0) === answered + 1) {
        answered++;
        next?.();
      }
    }
  });
  const buf = Buffer.alloc(32);
  for (let i = 1; i <= rounds; i++) {
    const got = new Promise((r) => (next = r));
    buf.writeUInt32LE(i, 0);
    if (a.sendMessageToUser(addrOf(b), buf, SendFlags.ReliableNoNagle, 0) !== EResult.OK) throw new Error('send failed');
    await got;
  }
  return answered;
}

test('an idle JS thread reads the datagrams itself: a ping-pong counts them in datagramsReceivedOnJsThread', async (t) => {
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  t.is(await pingPong(a, b, 200), 200);
  for (const [name, ep] of [
    ['client', a],
    ['server', b],
  ]) {
    const s = ep.getEndpointStats();
    t.true(s.datagramsReceivedOnJsThread > 0, `${name}: ${s.datagramsReceivedOnJsThread} of ${s.datagramsReceived} on the JS thread`);
    t.true(s.datagramsReceivedOnJsThread <= s.datagramsReceived);
  }
});

test('NETMESSAGES_JS_RECEIVE=0 leaves every datagram to the driver thread (child process)', (t) => {
  const script = `
    const { NetworkingMessages, SendFlags } = await import(${JSON.stringify(dist)});
    const [a, b] = await Promise.all([0, 1].map(() => NetworkingMessages.create({ bind: '127.0.0.1:0' })));
    b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
    const to = 'ip:127.0.0.1:' + b.localAddress.port;
    let got = 0;
    const done = new Promise((r) => b.on('messages', (ch) => { got += b.receiveMessagesOnChannel(ch, 64).length; if (got >= 50) r(); }));
    for (let i = 0; i < 50; i++) a.sendMessageToUser(to, 'x' + i, SendFlags.ReliableNoNagle, 0);
    await done;
    const s = b.getEndpointStats();
    console.log(JSON.stringify({ got, received: s.datagramsReceived, onJs: s.datagramsReceivedOnJsThread }));
    await Promise.all([a.close(), b.close()]);
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, NETMESSAGES_JS_RECEIVE: '0' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  t.is(out.got, 50);
  t.true(out.received > 0);
  t.is(out.onJs, 0);
});

test('a busy JS thread loses nothing: the driver reads every reliable message meanwhile, in order, and hands reading back after', async (t) => {
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const order = [];
  b.on('sessionRequest', ({ identityRemote }) => {
    order.push('sessionRequest');
    b.acceptSessionWithUser(identityRemote);
  });
  const got = [];
  b.on('messages', (ch) => {
    if (!order.includes('messages')) order.push('messages');
    for (const m of b.receiveMessagesOnChannel(ch, 256)) got.push(m.data.toString());
  });
  // Warm up: a session, read on the JS thread.
  t.is(a.sendMessageToUser(addrOf(b), 'warm', SendFlags.ReliableNoNagle, 0), EResult.OK);
  await waitFor(() => got.length === 1, 5000, 'the first message');
  const before = b.getEndpointStats();
  // 300 reliable messages, then JS blocks: only the driver threads (a's sends what the
  // window holds back, b's reads and acknowledges) can move them.
  const n = 300;
  for (let i = 0; i < n; i++) t.is(a.sendMessageToUser(addrOf(b), `m${i}`, SendFlags.Reliable, 0), EResult.OK);
  busyUntil(() => b.getEndpointStats().messagesQueued >= n, 20_000, `${n} messages queued at b by the driver thread`);
  const during = b.getEndpointStats();
  t.true(during.datagramsReceived > before.datagramsReceived, 'b received datagrams while JS was busy');
  t.is(during.datagramsReceivedOnJsThread, before.datagramsReceivedOnJsThread, 'none of them on the busy JS thread');
  // Yield: every message, in order.
  await waitFor(() => got.length === n + 1, 10_000, `${n} messages after the busy phase (got ${got.length - 1})`);
  t.deepEqual(got, ['warm', ...Array.from({ length: n }, (_, i) => `m${i}`)]);
  t.deepEqual(order, ['sessionRequest', 'messages']);
  // Idle again: the JS thread reads once more.
  for (let i = 0; i < 20; i++) {
    a.sendMessageToUser(addrOf(b), `late${i}`, SendFlags.ReliableNoNagle, 0);
    await waitFor(() => got.length === n + 2 + i, 5000, `late message ${i}`);
  }
  t.true(b.getEndpointStats().datagramsReceivedOnJsThread > during.datagramsReceivedOnJsThread, 'reading came back to the JS thread');
});

test('fake-network knobs hand reading to the driver thread, and clearing them hands it back', async (t) => {
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  const got = [];
  b.on('messages', (ch) => {
    for (const m of b.receiveMessagesOnChannel(ch, 64)) got.push(m.data.toString());
  });
  const send = async (tag, k) => {
    for (let i = 0; i < k; i++) {
      a.sendMessageToUser(addrOf(b), `${tag}${i}`, SendFlags.ReliableNoNagle, 0);
      await waitFor(() => got.at(-1) === `${tag}${i}`, 5000, `${tag}${i}`);
    }
  };
  await send('idle', 20);
  t.true(b.getEndpointStats().datagramsReceivedOnJsThread > 0);
  b.setConfig({ fakePacketLagRecv: 1 });
  const lagged = b.getEndpointStats();
  await send('lag', 20);
  const after = b.getEndpointStats();
  t.true(after.datagramsReceived >= lagged.datagramsReceived + 20);
  t.is(after.datagramsReceivedOnJsThread, lagged.datagramsReceivedOnJsThread, 'with a knob set, only the driver reads');
  b.setConfig({ fakePacketLagRecv: 0 });
  await send('clear', 20);
  t.true(b.getEndpointStats().datagramsReceivedOnJsThread > after.datagramsReceivedOnJsThread, 'cleared: the JS thread reads again');
  t.deepEqual(got, ['idle', 'lag', 'clear'].flatMap((tag) => Array.from({ length: 20 }, (_, i) => `${tag}${i}`)));
});

test('connection API: ping-pong, a busy JS thread, and every message in order with Connected before it', async (t) => {
  const [server, client] = await Promise.all([NetworkingSockets.create(), NetworkingSockets.create()]);
  t.teardown(() => Promise.all([server.close(), client.close()]));
  const listen = server.createListenSocketIP('127.0.0.1:0');
  const { address, port } = server.getListenSocketAddress(listen);
  const order = [];
  let serverConn = 0;
  server.on('connectionStatusChanged', (e) => {
    if (e.info.state === ConnectionState.Connecting) server.acceptConnection(e.conn);
    if (e.info.state === ConnectionState.Connected) {
      serverConn = e.conn;
      order.push('connected');
    }
  });
  const got = [];
  server.on('messages', ({ conn }) => {
    if (!order.includes('messages')) order.push('messages');
    for (const m of server.receiveMessagesOnConnection(conn, 256)) got.push(m.data.toString());
  });
  const echoes = [];
  client.on('messages', ({ conn }) => {
    for (const m of client.receiveMessagesOnConnection(conn, 256)) echoes.push(m.data.toString());
  });
  const conn = client.connectByIPAddress(`${address}:${port}`);
  await waitFor(() => client.getConnectionInfo(conn)?.state === ConnectionState.Connected && serverConn !== 0, 5000, 'connected');
  for (let i = 0; i < 50; i++) {
    t.is(client.sendMessageToConnection(conn, `p${i}`, SendFlags.ReliableNoNagle, 0).result, EResult.OK);
    await waitFor(() => got.length === i + 1, 5000, `ping ${i}`);
    server.sendMessageToConnection(serverConn, `e${i}`, SendFlags.ReliableNoNagle, 0);
    await waitFor(() => echoes.length === i + 1, 5000, `echo ${i}`);
  }
  const n = 300;
  for (let i = 0; i < n; i++) client.sendMessageToConnection(conn, `m${i}`, SendFlags.Reliable, 0);
  // Busy until the client's driver saw everything acknowledged: the server's driver read it all.
  busyUntil(
    () => {
      const { status } = client.getConnectionRealTimeStatus(conn);
      return status !== null && status.pendingReliable === 0 && status.sentUnackedReliable === 0;
    },
    20_000,
    'every reliable message acknowledged',
  );
  await waitFor(() => got.length === 50 + n, 10_000, `${n} messages after the busy phase (got ${got.length - 50})`);
  t.deepEqual(got, [...Array.from({ length: 50 }, (_, i) => `p${i}`), ...Array.from({ length: n }, (_, i) => `m${i}`)]);
  t.deepEqual(order, ['connected', 'messages']);
});
