// P2P's create options and the custom signaling object, without a network: bad options are
// TypeErrors; a send to an identity hands a rendezvous blob to the signaling object; the
// object's "not-registered" ends the session at once with the reason. (Sessions over real
// NATs are in __test__/p2p/sessions.test.mjs, `npm run test:p2p`.)
import test from 'ava';
import { once } from 'node:events';

import { ConnectionState, NetworkingMessages, NetworkingSockets, SendFlags, generateKeyPair, issueCertificate } from '../dist/index.mjs';

const ca = generateKeyPair();
function creds(identity) {
  const k = generateKeyPair();
  return {
    identity,
    privateKey: k.privateKey,
    certificate: issueCertificate({ caPrivateKey: ca.privateKey, publicKey: k.publicKey, identity }),
    trustedCAs: [ca.publicKey],
  };
}

test('bad P2P options are TypeErrors', async (t) => {
  const c = creds('str:opts');
  await t.throwsAsync(NetworkingMessages.create({ ...c, bind: '127.0.0.1:0', signaling: 'http://x' }), { instanceOf: TypeError, message: /ws:\/\// });
  await t.throwsAsync(NetworkingMessages.create({ ...c, bind: '127.0.0.1:0', signaling: {} }), { instanceOf: TypeError, message: /send/ });
  await t.throwsAsync(NetworkingMessages.create({ ...c, bind: '127.0.0.1:0', stunServers: ['127.0.0.1:3478'] }), {
    instanceOf: TypeError,
    message: /need signaling/,
  });
  await t.throwsAsync(
    NetworkingMessages.create({
      ...c,
      bind: '127.0.0.1:0',
      signaling: { send() {} },
      config: { p2pTurnServerList: '127.0.0.1:3478,127.0.0.1:3479', p2pTurnUserList: 'a', p2pTurnPassList: 'b' },
    }),
    { instanceOf: TypeError, message: /one of each per server/ },
  );
  await t.throwsAsync(NetworkingMessages.create({ ...c, bind: '127.0.0.1:0', signaling: { send() {} }, stunServers: ['nohost:99999'] }), {
    instanceOf: TypeError,
  });
  await t.throwsAsync(NetworkingMessages.create({ bind: '127.0.0.1:0', signaling: { send() {} } }), { instanceOf: TypeError, message: /identity/ });
  await t.throwsAsync(NetworkingMessages.create({ ...c, bind: '127.0.0.1:0', config: { p2pTransportIceEnable: -1 } }), { instanceOf: RangeError });
});

test('a custom signaling object carries the rendezvous; not-registered fails the session at once', async (t) => {
  const sent = [];
  const signaling = {
    send(identity, blob) {
      sent.push({ identity, blob });
      setImmediate(() => this.onUndeliverable?.(identity, 'not-registered', 'test'));
    },
  };
  const ep = await NetworkingMessages.create({ ...creds('str:custom-a'), bind: '127.0.0.1:0', signaling, config: { p2pTransportIceEnable: 4 } });
  t.teardown(() => ep.close());
  t.is(typeof signaling.onMessage, 'function', 'netmessages set onMessage');
  const failed = once(ep, 'sessionFailed');
  const t0 = Date.now();
  t.is(ep.sendMessageToUser('str:custom-b', 'hi', SendFlags.Reliable, 0), 1);
  const [{ info }] = await failed;
  t.is(sent[0].identity, 'str:custom-b');
  t.true(sent[0].blob instanceof Uint8Array && sent[0].blob.length > 0);
  t.is(info.identityRemote.toString(), 'str:custom-b');
  t.is(info.endReason, 5008);
  t.regex(info.endDebug, /not registered/);
  t.true(Date.now() - t0 < 1000);
  t.is(ep.getConfig().p2pTransportIceEnable, 4);
});

test('the connection API over P2P: clear errors, and not-registered ends a connectP2P at once', async (t) => {
  const plain = await NetworkingSockets.create(creds('str:sock-plain'));
  t.teardown(() => plain.close());
  t.throws(() => plain.connectP2P('str:x', 1), { message: /not enabled/ });
  t.throws(() => plain.createListenSocketP2P(1), { message: /not enabled/ });
  await t.throwsAsync(NetworkingSockets.create({ ...creds('str:sock-bad'), signaling: 'http://x' }), { instanceOf: TypeError, message: /ws:\/\// });

  const sent = [];
  const signaling = {
    send(identity, blob) {
      sent.push(identity);
      setImmediate(() => this.onUndeliverable?.(identity, 'not-registered', 'test'));
    },
  };
  const s = await NetworkingSockets.create({ ...creds('str:sock-a'), signaling, config: { p2pTransportIceEnable: 4 } });
  t.teardown(() => s.close());
  t.is(typeof signaling.onMessage, 'function', 'netmessages set onMessage');
  t.throws(() => s.connectP2P('ip:127.0.0.1:1', 1), { instanceOf: TypeError, message: /by IP address/ });
  t.throws(() => s.connectP2P('str:sock-a', 1), { instanceOf: TypeError, message: /own identity/ });
  t.throws(() => s.connectP2P('str:sock-b', -1), { instanceOf: TypeError, message: /virtualPort/ });
  const l = s.createListenSocketP2P(5);
  t.true(l > 0);
  t.throws(() => s.createListenSocketP2P(5), { message: /already has a listen socket/ });
  t.true(s.closeListenSocket(l));
  t.true(s.createListenSocketP2P(5) > 0, 'the virtual port is free again');

  const ended = new Promise((resolve) =>
    s.on('connectionStatusChanged', ({ conn, info }) => {
      if (info.state === ConnectionState.ProblemDetectedLocally) resolve({ conn, info });
    }),
  );
  const t0 = Date.now();
  const conn = s.connectP2P('str:sock-b', 7);
  t.true(conn > 0);
  t.is(s.getConnectionInfo(conn).state, ConnectionState.FindingRoute);
  const e = await ended;
  t.is(e.conn, conn);
  t.is(e.info.endReason, 5008);
  t.regex(e.info.endDebug, /not registered/);
  t.true(Date.now() - t0 < 2000);
  t.deepEqual([...new Set(sent)], ['str:sock-b']);
});
