// Several driver threads on one port (`driverThreads`, netdriver/src/reuse_port.rs): one
// NetworkingMessages object over a group of SO_REUSEPORT sockets, the kernel routing each
// peer's datagrams to the thread that holds its sessions.
import test from 'ava';

import { EResult, NetworkingMessages, SendFlags, generateKeyPair, issueCertificate } from '../dist/index.mjs';
import { addrOf, collect, endpoint } from './helpers.mjs';

const linux = process.platform === 'linux';

test('a server on 4 driver threads talks to 16 clients both ways: sessions it opens and sessions they open', async (t) => {
  if (!linux) return t.pass('driverThreads > 1 is Linux only');
  const server = await endpoint({ driverThreads: 4 });
  const clients = await Promise.all(Array.from({ length: 16 }, () => endpoint()));
  t.teardown(() => Promise.all([server.close(), ...clients.map((c) => c.close())]));
  server.on('sessionRequest', ({ identityRemote }) => server.acceptSessionWithUser(identityRemote));
  for (const c of clients) c.on('sessionRequest', ({ identityRemote }) => c.acceptSessionWithUser(identityRemote));
  // The server dials the first half (its shard's handshake must receive the replies), the
  // second half dial it.
  clients.slice(0, 8).forEach((c, i) => t.is(server.sendMessageToUser(addrOf(c), `s${i}`, SendFlags.Reliable, 0), EResult.OK));
  clients.slice(8).forEach((c, i) => t.is(c.sendMessageToUser(addrOf(server), `c${i + 8}`, SendFlags.Reliable, 0), EResult.OK));
  for (const [i, c] of clients.slice(0, 8).entries()) {
    const [m] = await collect(c, 0, 1);
    t.is(m.data.toString(), `s${i}`);
    t.is(c.sendMessageToUser(addrOf(server), `c${i}`, SendFlags.Reliable, 0), EResult.OK);
  }
  const heard = (await collect(server, 0, 16)).map((m) => m.data.toString()).sort();
  t.deepEqual(heard, Array.from({ length: 16 }, (_, i) => `c${i}`).sort());
  // Replies go back on the sessions the clients opened; a batch spans every shard.
  const batch = clients.map((c, i) => ({ identityRemote: addrOf(c), data: `b${i}`, sendFlags: SendFlags.Reliable }));
  t.deepEqual(server.sendMessages(batch), batch.map(() => EResult.OK));
  for (const [i, c] of clients.entries()) {
    const got = (await collect(c, 0, 1)).map((m) => m.data.toString());
    t.true(got.includes(`b${i}`), `client ${i}: ${got}`);
  }
  const stats = server.getEndpointStats();
  t.is(stats.sessions, 16);
  t.is(server.listSessions().length, 16);
  t.true(stats.datagramsReceived > 0);
  for (const c of clients) t.is(server.getSessionConnectionInfo(addrOf(c)).state, 3 /* Connected */);
});

test('peers known by name (certificates) are found on their shard: the server answers str: identities it has no address for', async (t) => {
  if (!linux) return t.pass('driverThreads > 1 is Linux only');
  const ca = generateKeyPair();
  const server = await endpoint({ driverThreads: 3, trustedCAs: [ca.publicKey] });
  const names = Array.from({ length: 9 }, (_, i) => `c${i}`);
  const clients = await Promise.all(
    names.map((name) => {
      const keys = generateKeyPair();
      const certificate = issueCertificate({ caPrivateKey: ca.privateKey, publicKey: keys.publicKey, identity: `str:${name}` });
      return endpoint({ identity: `str:${name}`, privateKey: keys.privateKey, certificate, trustedCAs: [ca.publicKey] });
    }),
  );
  t.teardown(() => Promise.all([server.close(), ...clients.map((c) => c.close())]));
  server.on('sessionRequest', ({ identityRemote }) => server.acceptSessionWithUser(identityRemote));
  clients.forEach((c, i) => t.is(c.sendMessageToUser(addrOf(server), names[i], SendFlags.Reliable, 0), EResult.OK));
  const heard = await collect(server, 0, names.length);
  t.deepEqual(heard.map((m) => m.identityPeer.toString()).sort(), names.map((n) => `str:${n}`).sort());
  // No resolve function: only the shard that holds the session knows where str:cN is.
  for (const n of names) t.is(server.sendMessageToUser(`str:${n}`, `hi ${n}`, SendFlags.Reliable, 0), EResult.OK);
  for (const [i, c] of clients.entries()) {
    const [m] = await collect(c, 0, 1);
    t.is(m.data.toString(), `hi ${names[i]}`);
  }
  t.is(server.sendMessageToUser('str:nobody', 'x', SendFlags.Reliable, 0), EResult.NoConnection);
});

test('driverThreads is checked: integers from 1 to 16, not with P2P signaling', async (t) => {
  for (const bad of [0, 17, 1.5, '2', -1]) {
    await t.throwsAsync(NetworkingMessages.create({ bind: '127.0.0.1:0', driverThreads: bad }), { instanceOf: RangeError });
  }
  await t.throwsAsync(NetworkingMessages.create({ bind: '127.0.0.1:0', driverThreads: 2, signaling: { send() {} }, identity: 'str:x' }), {
    instanceOf: TypeError,
    message: /driverThreads: 1/,
  });
  const one = await endpoint({ driverThreads: 1 });
  await one.close();
  t.pass();
});

test('two endpoints with driver threads cannot share a port: the second bind fails as dgram would', async (t) => {
  if (!linux) return t.pass('driverThreads > 1 is Linux only');
  const a = await endpoint({ driverThreads: 2 });
  t.teardown(() => a.close());
  const err = await t.throwsAsync(endpoint({ bind: `127.0.0.1:${a.localAddress.port}`, driverThreads: 2 }));
  t.is(err.code, 'EADDRINUSE');
});

for (const threads of [1, 3]) {
  test(`close() frees the port (driverThreads ${threads}): it can be bound again as soon as close() resolves`, async (t) => {
    if (threads > 1 && !linux) return t.pass('driverThreads > 1 is Linux only');
    const a = await endpoint({ driverThreads: threads });
    const port = a.localAddress.port;
    await a.close();
    // Before the fix the sockets lived until the object was collected: EADDRINUSE here.
    const b = await endpoint({ bind: `127.0.0.1:${port}` });
    t.is(b.localAddress.port, port);
    await b.close();
  });
}
