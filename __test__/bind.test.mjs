// Binding (issue 17): the default bind is dual-stack `[::]` with a usable identity (bug 5);
// a refused bind carries Node's codes as dgram's errors do; unknown options are a TypeError.
import test from 'ava';
import dgram from 'node:dgram';
import { once } from 'node:events';

import { EResult, NetworkingMessages, SendFlags } from '../dist/index.mjs';
import { collect, endpoint } from './helpers.mjs';

/** The error dgram gives for the same bind, to compare shapes. */
async function dgramBindError(type, port, address) {
  const s = dgram.createSocket(type);
  try {
    s.bind(port, address);
    const [err] = await once(s, 'error');
    return err;
  } finally {
    s.close();
  }
}

test('the default bind serves IPv4 and IPv6 peers on one socket, and its identity is usable', async (t) => {
  const server = await NetworkingMessages.create();
  t.teardown(() => server.close());
  t.is(server.localAddress.address, '::', 'dual-stack [::] where the OS allows it (Linux: net.ipv6.bindv6only=0)');
  const port = server.localAddress.port;
  t.is(server.identity.toString(), `ip:127.0.0.1:${port}`, 'not ip:0.0.0.0, which no peer can use');
  server.on('sessionRequest', ({ identityRemote }) => server.acceptSessionWithUser(identityRemote));
  server.on('messages', (ch) => {
    for (const m of server.receiveMessagesOnChannel(ch, 256)) server.sendMessageToUser(m.identityPeer, `echo ${m.data}`, SendFlags.Reliable, ch);
  });

  const v4 = await endpoint({ bind: '127.0.0.1:0' });
  const v6 = await endpoint({ bind: '[::1]:0' });
  t.teardown(() => Promise.all([v4.close(), v6.close()]));
  t.is(v4.sendMessageToUser(server.identity, 'from v4', SendFlags.Reliable, 0), EResult.OK);
  t.is(v6.sendMessageToUser(`ip:[::1]:${port}`, 'from v6', SendFlags.Reliable, 0), EResult.OK);
  const [r4] = await collect(v4, 0, 1);
  const [r6] = await collect(v6, 0, 1);
  t.is(r4.data.toString(), 'echo from v4');
  t.is(r6.data.toString(), 'echo from v6');
  t.is(r4.identityPeer.toString(), `ip:127.0.0.1:${port}`);
  t.is(r6.identityPeer.toString(), `ip:[::1]:${port}`);
});

test('an explicit 0.0.0.0 bind reports the loopback identity too', async (t) => {
  const p = await NetworkingMessages.create({ bind: '0.0.0.0:0' });
  t.teardown(() => p.close());
  t.is(p.localAddress.address, '0.0.0.0');
  t.is(p.identity.toString(), `ip:127.0.0.1:${p.localAddress.port}`);
});

test('EADDRINUSE: the same code, errno, syscall and address fields as dgram', async (t) => {
  const first = await endpoint();
  t.teardown(() => first.close());
  const port = first.localAddress.port;
  const err = await t.throwsAsync(() => NetworkingMessages.create({ bind: `127.0.0.1:${port}` }));
  const ref = await dgramBindError('udp4', port, '127.0.0.1');
  t.is(err.code, 'EADDRINUSE');
  t.is(err.code, ref.code);
  t.is(err.errno, ref.errno);
  t.is(err.syscall, 'bind');
  t.is(err.address, '127.0.0.1');
  t.is(err.port, port);
  t.true(err.message.startsWith(`bind EADDRINUSE 127.0.0.1:${port}`), err.message);
});

test('EADDRNOTAVAIL for an address this host does not have', async (t) => {
  // 192.0.2.1 is TEST-NET-1 (RFC 5737): never assigned to a host.
  const err = await t.throwsAsync(() => NetworkingMessages.create({ bind: '192.0.2.1:0' }));
  const ref = await dgramBindError('udp4', 0, '192.0.2.1');
  t.is(err.code, 'EADDRNOTAVAIL');
  t.is(err.errno, ref.errno);
  t.is(err.address, '192.0.2.1');
});

test('EACCES for a privileged port (only when not running as root)', async (t) => {
  if (process.platform === 'win32' || process.getuid?.() === 0) {
    t.log('skipped: as root (or on Windows) a privileged port can be bound, so EACCES cannot be provoked');
    t.pass();
    return;
  }
  const err = await t.throwsAsync(() => NetworkingMessages.create({ bind: '127.0.0.1:1' }));
  t.is(err.code, 'EACCES');
});

test('a bind address that does not parse is a TypeError; unknown create options are a TypeError', async (t) => {
  const bad = await t.throwsAsync(() => NetworkingMessages.create({ bind: 'not an address' }), { instanceOf: TypeError });
  t.regex(bad.message, /invalid bind address/);
  const unknown = await t.throwsAsync(() => NetworkingMessages.create({ bind: '127.0.0.1:0', trustedCas: [] }), { instanceOf: TypeError });
  t.regex(unknown.message, /unknown create option "trustedCas" \(did you mean "trustedCAs"\?\)/);
  t.is(unknown.code, 'ERR_NETMESSAGES_UNKNOWN_OPTION');
  await t.throwsAsync(() => NetworkingMessages.create({ port: 27015 }), { instanceOf: TypeError, message: /unknown create option "port"/ });
});
