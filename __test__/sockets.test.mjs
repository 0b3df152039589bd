// The connection API (ISteamNetworkingSockets) over real loopback sockets.
import test from 'ava';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NetworkingSockets, ConnectionState, EResult, SendFlags } from '../dist/index.mjs';

const RELIABLE = SendFlags.Reliable;
const NOW = SendFlags.ReliableNoNagle;

/** Resolves with the first `connectionStatusChanged` event matching `pred`. */
function statusEvent(s, pred, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for a status change')), ms);
    const on = (e) => {
      if (pred(e)) {
        clearTimeout(timer);
        s.off('connectionStatusChanged', on);
        resolve(e);
      }
    };
    s.on('connectionStatusChanged', on);
  });
}

async function receive(s, conn, count, ms = 5000) {
  const got = [];
  const deadline = Date.now() + ms;
  while (got.length < count) {
    got.push(...s.receiveMessagesOnConnection(conn, 64));
    if (Date.now() > deadline) throw new Error(`got ${got.length} of ${count} messages`);
    if (got.length < count) await new Promise((r) => setTimeout(r, 5));
  }
  return got;
}

/** A server instance listening on loopback, a client connected to it, both accepted. */
async function connectedPair(t) {
  const server = await NetworkingSockets.create();
  const client = await NetworkingSockets.create();
  t.teardown(() => Promise.all([server.close(), client.close()]));
  const listen = server.createListenSocketIP('127.0.0.1:0');
  const { port } = server.getListenSocketAddress(listen);
  const incoming = statusEvent(server, (e) => e.info.state === ConnectionState.Connecting);
  const conn = client.connectByIPAddress(`127.0.0.1:${port}`, { userData: 7 });
  t.true(conn > 0);
  const { conn: serverConn, info, oldState } = await incoming;
  t.is(oldState, ConnectionState.None);
  t.is(info.listenSocket, listen);
  const clientUp = statusEvent(client, (e) => e.conn === conn && e.info.state === ConnectionState.Connected);
  t.is(server.acceptConnection(serverConn), EResult.OK);
  const up = await clientUp;
  t.is(up.info.userData, 7);
  return { server, client, listen, conn, serverConn };
}

test('listen, connect, accept and exchange on lanes, with Steam results', async (t) => {
  const { server, client, conn, serverConn } = await connectedPair(t);
  t.is(server.acceptConnection(serverConn), EResult.InvalidState, 'accepted once');
  t.is(server.acceptConnection(424242), EResult.InvalidParam);
  // User data is stamped on messages as they arrive: set it before anything is sent.
  t.true(server.setConnectionUserData(serverConn, 99));
  t.is(server.getConnectionUserData(serverConn), 99);
  t.is(server.getConnectionUserData(424242), -1);
  t.is(client.sendMessageToConnection(conn, 'x', RELIABLE, 1).result, EResult.InvalidParam, 'one lane by default');
  t.is(client.configureConnectionLanes(conn, [0, 10], [1, 1]), EResult.OK);
  const a = client.sendMessageToConnection(conn, 'first', RELIABLE, 0);
  t.deepEqual(a, { result: EResult.OK, messageNumber: 1n });
  t.is(client.sendMessageToConnection(conn, Buffer.from([1, 2, 3]), SendFlags.UnreliableNoNagle, 1).result, EResult.OK);
  t.is(client.sendMessageToConnection(conn, 'second', NOW, 0).messageNumber, 2n);
  const got = await receive(server, serverConn, 3);
  const reliable = got.filter((m) => m.lane === 0).map((m) => m.data.toString());
  t.deepEqual(reliable, ['first', 'second']);
  const unreliable = got.find((m) => m.lane === 1);
  t.deepEqual([...unreliable.data], [1, 2, 3]);
  for (const m of got) {
    t.is(m.conn, serverConn);
    t.is(m.connUserData, 99);
    t.is(m.identityPeer.toString(), `ip:127.0.0.1:${server.getConnectionInfo(serverConn).remoteAddress.split(':')[1]}`);
  }
  const info = server.getConnectionInfo(serverConn);
  t.is(info.state, ConnectionState.Connected);
  t.true(server.setConnectionName(serverConn, 'player one'));
  t.is(server.getConnectionName(serverConn), 'player one');
  t.regex(server.getDetailedConnectionStatus(serverConn), /player one/);
  const { result, status } = client.getConnectionRealTimeStatus(conn);
  t.is(result, EResult.OK);
  t.is(status.state, ConnectionState.Connected);
  t.is(client.getConnectionRealTimeStatus(31337).result, EResult.NoConnection);
  t.is(client.flushMessagesOnConnection(conn), EResult.OK);
  t.is(client.flushMessagesOnConnection(31337), EResult.InvalidParam);
  t.throws(() => client.sendMessageToConnection('nope', 'x'), { instanceOf: TypeError });
  t.throws(() => client.connectByIPAddress('not an address'), { instanceOf: TypeError });
});

test('close from either side: the other sees ClosedByPeer with the reason and text; the handle goes', async (t) => {
  for (const closerIsClient of [true, false]) {
    const { server, client, conn, serverConn } = await connectedPair(t);
    const [closer, other, h, otherH] = closerIsClient ? [client, server, conn, serverConn] : [server, client, serverConn, conn];
    const closed = statusEvent(other, (e) => e.conn === otherH && e.info.state === ConnectionState.ClosedByPeer);
    const none = statusEvent(closer, (e) => e.conn === h && e.info.state === ConnectionState.None);
    t.true(closer.closeConnection(h, 1234, 'game over'));
    const e = await closed;
    t.is(e.info.endReason, 1234);
    t.is(e.info.endDebug, 'game over');
    await none;
    t.is(closer.getConnectionInfo(h), null, 'a closed handle is just invalid');
    t.false(closer.closeConnection(h));
    t.is(closer.sendMessageToConnection(h, 'x').result, EResult.InvalidParam);
    t.deepEqual(closer.receiveMessagesOnConnection(h), []);
    t.is(other.sendMessageToConnection(otherH, 'x').result, EResult.NoConnection);
    t.false(closer.closeConnection(conn === h ? serverConn : conn, 3000, 'not an app code'));
  }
});

test('a lingering close delivers what was queued, then closes', async (t) => {
  const { server, client, conn, serverConn } = await connectedPair(t);
  const big = Buffer.alloc(300_000, 5);
  t.is(client.sendMessageToConnection(conn, big, RELIABLE).result, EResult.OK);
  const closed = statusEvent(server, (e) => e.conn === serverConn && e.info.state === ConnectionState.ClosedByPeer, 10_000);
  t.true(client.closeConnection(conn, 1001, 'bye', true));
  const [m] = await receive(server, serverConn, 1, 10_000);
  t.is(m.size, big.length);
  t.is((await closed).info.endReason, 1001);
});

test('poll groups, batch sends, socket pairs and the async iterator', async (t) => {
  const { server, client, conn, serverConn } = await connectedPair(t);
  const g = server.createPollGroup();
  t.true(server.setConnectionPollGroup(serverConn, g));
  t.false(server.setConnectionPollGroup(serverConn, 999999));
  const results = client.sendMessages([
    { conn, data: 'a', sendFlags: NOW, userData: 1 },
    { conn, data: 'b', sendFlags: NOW, userData: 2 },
    { conn: 9999, data: 'c', userData: 3 },
    { conn, data: 42 },
  ]);
  t.deepEqual(
    results.map((r) => [r.result, r.userData]),
    [[EResult.OK, 1], [EResult.OK, 2], [EResult.InvalidParam, 3], [EResult.InvalidParam, undefined]],
  );
  const got = [];
  for await (const m of server.messages({ pollGroup: g })) {
    got.push(m.data.toString());
    if (got.length === 2) break;
  }
  t.deepEqual(got, ['a', 'b']);
  t.is(server.listenerCount('messages'), 0);
  t.true(server.destroyPollGroup(g));
  t.false(server.destroyPollGroup(g));

  const pair = client.createSocketPair();
  t.truthy(pair);
  const [p, q] = pair;
  t.is(client.getConnectionInfo(p).state, ConnectionState.Connected);
  t.is(client.sendMessageToConnection(p, 'over the pair', NOW).result, EResult.OK);
  const [m] = await receive(client, q, 1);
  t.is(m.data.toString(), 'over the pair');
});

test('an unaccepted connection times out on both sides', async (t) => {
  const server = await NetworkingSockets.create({ config: { timeoutInitial: 600 } });
  const client = await NetworkingSockets.create({ config: { timeoutInitial: 800 } });
  t.teardown(() => Promise.all([server.close(), client.close()]));
  const listen = server.createListenSocketIP('127.0.0.1:0');
  const { port } = server.getListenSocketAddress(listen);
  const serverFailed = statusEvent(server, (e) => e.info.state === ConnectionState.ProblemDetectedLocally);
  const conn = client.connectByIPAddress(`127.0.0.1:${port}`);
  const clientFailed = statusEvent(client, (e) => e.conn === conn && e.info.state === ConnectionState.ProblemDetectedLocally);
  t.is((await serverFailed).info.endReason, 5003);
  t.is((await clientFailed).info.endReason, 5003);
});

test('two processes: a child connects to our listen socket and echoes', async (t) => {
  const server = await NetworkingSockets.create();
  t.teardown(() => server.close());
  const listen = server.createListenSocketIP('127.0.0.1:0');
  server.on('connectionStatusChanged', (e) => {
    if (e.info.state === ConnectionState.Connecting) server.acceptConnection(e.conn);
  });
  const { port } = server.getListenSocketAddress(listen);
  const child = fork(fileURLToPath(new URL('./fixtures/sockets-echo.mjs', import.meta.url)), [String(port)], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let childOut = '';
  child.stdout.on('data', (d) => (childOut += d));
  child.stderr.on('data', (d) => (childOut += d));
  const up = await statusEvent(server, (e) => e.info.state === ConnectionState.Connected, 10_000);
  for (let i = 0; i < 50; i++) server.sendMessageToConnection(up.conn, `msg ${i}`, RELIABLE);
  const echoed = await receive(server, up.conn, 50, 10_000);
  t.deepEqual(
    echoed.map((m) => m.data.toString()),
    Array.from({ length: 50 }, (_, i) => `echo msg ${i}`),
  );
  server.closeConnection(up.conn, 1000, 'done');
  const code = await new Promise((r) => child.on('exit', r));
  t.is(code, 0, childOut);
});

test('the messages event is posted again while a receive leaves messages, and a throwing listener stops no other', async (t) => {
  const { server, client, conn, serverConn } = await connectedPair(t);
  const g = server.createPollGroup();
  t.true(server.setConnectionPollGroup(serverConn, g));
  const N = 300;
  const byConn = [];
  const byGroup = [];
  let thrown = 0;
  // With an 'error' listener, a listener's exception goes there (else it is uncaught).
  const errors = [];
  server.on('error', (e) => errors.push(e));
  // Listeners registered before the one that reads: it throws on every event.
  server.on('messages', () => {
    thrown++;
    throw new Error('listener bug');
  });
  const done = new Promise((resolve) => {
    server.on('messages', (e) => {
      // A bounded read per event, as the quickstart's handlers do.
      if (e.pollGroup === g) byGroup.push(...server.receiveMessagesOnPollGroup(g, 10));
      else if (e.conn === serverConn) byConn.push(...server.receiveMessagesOnConnection(serverConn, 10));
      if (byGroup.length + byConn.length === N) resolve();
    });
  });
  for (let i = 0; i < N; i++) t.is(client.sendMessageToConnection(conn, `m${i}`, RELIABLE).result, EResult.OK);
  t.is(client.flushMessagesOnConnection(conn), EResult.OK);
  await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`drained ${byGroup.length + byConn.length} of ${N}`)), 10000))]);
  const texts = [...byGroup, ...byConn].map((m) => m.data.toString());
  t.is(new Set(texts).size, N, 'each message once');
  t.true(byGroup.length > 0);
  t.true(thrown > 1);
  t.is(errors.length, thrown, 'each throw is reported, none swallowed');
  t.true(errors.every((e) => e.message === 'listener bug'));
});
