// Errors that explain themselves (issue 17): every EResult that is not OK has a findable
// reason (`lastError()`, or a typed error with `strict`), identity slips are named, and the
// untrusted-certificate failure says which CA signed it and that trustedCAs decides.
import test from 'ava';
import { once } from 'node:events';
import { inspect } from 'node:util';

import {
  EResult,
  Identity,
  NetmessagesError,
  NetworkingMessages,
  SendFlags,
  generateKeyPair,
  issueCertificate,
  keyIdOf,
} from '../dist/index.mjs';
import { addrOf, endpoint, waitFor } from './helpers.mjs';

test('lastError() names the reason for each refused argument, and a success clears it', async (t) => {
  const p = await endpoint();
  t.teardown(() => p.close());
  const cases = [
    [['ip:localhost:27015', 'x'], 'ERR_NETMESSAGES_BAD_IDENTITY', /names a host, not an address.*Identity\.lookup\("localhost:27015"\)/],
    [['127.0.0.1:27015', 'x'], 'ERR_NETMESSAGES_BAD_IDENTITY', /has no type prefix: an address identity is written ip:127\.0\.0\.1:27015/],
    [['localhost:27015', 'x'], 'ERR_NETMESSAGES_BAD_IDENTITY', /no type prefix, and "localhost" is a hostname/],
    [['ip:1.2.3.4', 'x'], 'ERR_NETMESSAGES_BAD_IDENTITY', /has no port/],
    [[42, 'x'], 'ERR_NETMESSAGES_BAD_IDENTITY', /must be an Identity or its text form.*got number/],
    [['ip:127.0.0.1:9', 42], 'ERR_NETMESSAGES_BAD_DATA', /data must be a Uint8Array.*got number/],
    [['ip:127.0.0.1:9', new ArrayBuffer(4)], 'ERR_NETMESSAGES_BAD_DATA', /wrap it as new Uint8Array/],
    [['ip:127.0.0.1:9', Buffer.alloc(512 * 1024 + 1)], 'ERR_NETMESSAGES_MESSAGE_TOO_LARGE', /at most 512 KiB/],
    [['ip:127.0.0.1:9', 'x', 1.5], 'ERR_NETMESSAGES_BAD_FLAGS', /combination of SendFlags/],
    [['ip:127.0.0.1:9', 'x', 0, -1], 'ERR_NETMESSAGES_BAD_CHANNEL', /integer from 0 to 2\^31-1/],
  ];
  for (const [args, code, re] of cases) {
    t.is(p.sendMessageToUser(...args), EResult.InvalidParam, code);
    const e = p.lastError();
    t.is(e.result, EResult.InvalidParam);
    t.is(e.code, code);
    t.regex(e.message, re);
  }
  t.is(p.sendMessageToUser('ip:127.0.0.1:9', 'fine'), EResult.OK);
  t.is(p.lastError(), undefined);
  t.is(p.sendMessageToUser('str:bob', 'who?'), EResult.NoConnection);
  t.is(p.lastError().code, 'ERR_NETMESSAGES_NO_ROUTE');
  t.regex(p.lastError().message, /resolve option \(none given\)/);
  await p.close();
  t.is(p.sendMessageToUser('ip:127.0.0.1:9', 'late'), EResult.InvalidState);
  t.is(p.lastError().code, 'ERR_NETMESSAGES_CLOSED');
});

test('strict: bad arguments and calls after close throw a NetmessagesError; network results are returned', async (t) => {
  const p = await endpoint({ strict: true });
  const e = t.throws(() => p.sendMessageToUser('ip:localhost:1', 'x'), { instanceOf: NetmessagesError });
  t.is(e.code, 'ERR_NETMESSAGES_BAD_IDENTITY');
  t.is(e.result, EResult.InvalidParam);
  t.throws(() => p.sendMessages([{ identityRemote: 'ip:127.0.0.1:9', data: 'ok' }, { identityRemote: 'ip:127.0.0.1:9', data: 7 }]), {
    instanceOf: NetmessagesError,
    message: /messages\[1\]: data must be/,
  });
  t.is(p.sendMessageToUser('str:nobody', 'x'), EResult.NoConnection, 'a network result, not an argument error');
  await p.close();
  t.throws(() => p.sendMessageToUser('ip:127.0.0.1:9', 'x'), { instanceOf: NetmessagesError, code: 'ERR_NETMESSAGES_CLOSED' });
  t.throws(() => p.receiveMessagesOnChannel(0), { instanceOf: NetmessagesError, code: 'ERR_NETMESSAGES_CLOSED' });
});

test('LimitExceeded and a failed session have reasons too', async (t) => {
  const [a, b] = await Promise.all([endpoint({ config: { sendBufferSize: 10_000 } }), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  let r;
  do r = a.sendMessageToUser(addrOf(b), Buffer.alloc(4000), SendFlags.Reliable, 0);
  while (r === EResult.OK);
  t.is(r, EResult.LimitExceeded);
  t.is(a.lastError().code, 'ERR_NETMESSAGES_SEND_BUFFER_FULL');
  t.regex(a.lastError().message, /sendBufferSize 10000.*whenWritable/);

  const c = await endpoint({ config: { timeoutInitial: 300 } });
  t.teardown(() => c.close());
  const failed = once(c, 'sessionFailed');
  c.sendMessageToUser('ip:127.0.0.1:9', 'into the void', SendFlags.Reliable, 0);
  await failed;
  t.is(c.sendMessageToUser('ip:127.0.0.1:9', 'again', SendFlags.Reliable, 0), EResult.NoConnection);
  t.is(c.lastError().code, 'ERR_NETMESSAGES_SESSION_ENDED');
  t.regex(c.lastError().message, /ProblemDetectedLocally with reason \d+.*AutoRestartBrokenSession/);
});

test('Identity: clear parse errors, lookup() for hostnames, and util.inspect shows the text', async (t) => {
  const err = t.throws(() => Identity.parse('ip:localhost:27015'), { instanceOf: TypeError });
  t.regex(err.message, /names a host, not an address/);
  t.is(err.code, 'ERR_NETMESSAGES_BAD_IDENTITY');
  t.throws(() => Identity.parse('bob'), { message: /has no type prefix: use ip:host:port, str:name/ });
  t.throws(() => Identity.parse('user:bob'), { message: /unknown type prefix/ });
  const local = await Identity.lookup('localhost:27015');
  t.true(['ip:127.0.0.1:27015', 'ip:[::1]:27015'].includes(local.toString()), local.toString());
  t.is((await Identity.lookup('ip:localhost:5', { family: 4 })).toString(), 'ip:127.0.0.1:5');
  t.is(inspect(Identity.parse('str:alice')), 'Identity(str:alice)');
  t.regex(inspect({ peer: Identity.parse('ip:1.2.3.4:5') }), /peer: Identity\(ip:1\.2\.3\.4:5\)/);
});

test('a resolver that returns a hostname is refused with the reason', async (t) => {
  const p = await endpoint({ resolve: () => 'localhost:27015' });
  t.teardown(() => p.close());
  t.is(p.sendMessageToUser('str:bob', 'x'), EResult.InvalidParam);
  t.is(p.lastError().code, 'ERR_NETMESSAGES_BAD_RESOLVE');
  t.regex(p.lastError().message, /numeric address/);
});

test('an untrusted CA: the failure names the CA key id and says trustedCAs decides', async (t) => {
  const ours = generateKeyPair();
  const theirs = generateKeyPair();
  const keys = generateKeyPair();
  const carol = await endpoint({
    identity: 'str:carol',
    privateKey: keys.privateKey,
    certificate: issueCertificate({ caPrivateKey: theirs.privateKey, publicKey: keys.publicKey, identity: 'str:carol' }),
    trustedCAs: [theirs.publicKey],
  });
  const a = await endpoint({ trustedCAs: [ours.publicKey], resolve: () => `127.0.0.1:${carol.localAddress.port}` });
  t.teardown(() => Promise.all([a.close(), carol.close()]));
  const failed = once(a, 'sessionFailed');
  a.sendMessageToUser('str:carol', 'hi', SendFlags.Reliable, 0);
  const [{ info }] = await failed;
  t.is(info.endReason, 4003);
  t.regex(info.endDebug, new RegExp(`signed by CA key id ${keyIdOf(theirs.publicKey)}, which is not in trustedCAs \\(trusted: ${keyIdOf(ours.publicKey)}\\)`));
  t.regex(info.endDebug, /trustedCAs decides/);

  // The strict side says so too.
  const strict = await endpoint({ trustedCAs: [ours.publicKey], allowUnauthenticated: false });
  t.teardown(() => strict.close());
  const refused = once(carol, 'sessionFailed');
  carol.sendMessageToUser(addrOf(strict), 'let me in', SendFlags.Reliable, 0);
  const [{ info: back }] = await refused;
  t.is(back.endReason, 4003);
  t.regex(back.endDebug, new RegExp(`CA key id ${keyIdOf(theirs.publicKey)}`));
  await waitFor(() => strict.getEndpointStats().droppedBadCrypto > 0, 2000, 'the refusal counted');
});
