// Replying to whoever sent a message, for every identity kind (issue 17, bug 1): the
// receiver names the sender by `msg.identityPeer` and nothing else (no resolver), so the
// reply must travel on the live session's connection. Before the fix a named peer (`str:`,
// `gen:`, `steamid:`) got `NoConnection`: the send looked only at an address from the
// identity itself or the resolver.
import test from 'ava';

import { EResult, Identity, SendFlags, generateKeyPair, issueCertificate } from '../dist/index.mjs';
import { addrOf, collect, endpoint } from './helpers.mjs';

const ca = generateKeyPair();

function named(identity) {
  const keys = generateKeyPair();
  const certificate = issueCertificate({ caPrivateKey: ca.privateKey, publicKey: keys.publicKey, identity });
  return { identity, privateKey: keys.privateKey, certificate };
}

const kinds = [
  ['ip', undefined],
  ['str', 'str:alice'],
  ['gen', `gen:${Buffer.from('alice-bytes').toString('hex')}`],
  ['steamid', 'steamid:76561197960287930'],
];

for (const [kind, identity] of kinds) {
  test(`a reply to msg.identityPeer reaches a ${kind}: sender, with no resolver`, async (t) => {
    const alice = await endpoint({ ...(identity ? named(identity) : {}), trustedCAs: [ca.publicKey] });
    const bob = await endpoint({ trustedCAs: [ca.publicKey] });
    t.teardown(() => Promise.all([alice.close(), bob.close()]));
    bob.on('sessionRequest', ({ identityRemote }) => bob.acceptSessionWithUser(identityRemote));

    t.is(alice.sendMessageToUser(addrOf(bob), 'hello bob', SendFlags.Reliable, 1), EResult.OK);
    const [m] = await collect(bob, 1, 1);
    const expected = identity ?? addrOf(alice);
    t.true(m.identityPeer.equals(expected), `bob sees ${m.identityPeer}, expected ${expected}`);
    t.true(m.identityPeer.equals(alice.identity), 'the sender is known by the identity it has');

    // The reply, by the Identity object and by its text form.
    t.is(bob.sendMessageToUser(m.identityPeer, 'hi alice', SendFlags.Reliable, 2), EResult.OK);
    t.is(bob.sendMessageToUser(m.identityPeer.toString(), 'hi again', SendFlags.Reliable, 2), EResult.OK);
    const replies = await collect(alice, 2, 2);
    t.deepEqual(replies.map((r) => r.data.toString()), ['hi alice', 'hi again']);
    t.true(replies.every((r) => r.identityPeer.equals(addrOf(bob))));

    // Unreliable and batched replies take the same path.
    t.deepEqual(
      bob.sendMessages([
        { identityRemote: m.identityPeer, data: 'batched', sendFlags: SendFlags.ReliableNoNagle, channel: 3 },
        { identityRemote: Identity.parse(expected), data: 'batched 2', sendFlags: SendFlags.ReliableNoNagle, channel: 3 },
      ]),
      [EResult.OK, EResult.OK],
    );
    const batched = await collect(alice, 3, 2);
    t.deepEqual(batched.map((r) => r.data.toString()), ['batched', 'batched 2']);
  });
}

test('two named peers: the dialler resolves, the answerer replies by name alone', async (t) => {
  const bob = await endpoint({ ...named('str:bob'), trustedCAs: [ca.publicKey] });
  const alice = await endpoint({
    ...named('str:alice'),
    trustedCAs: [ca.publicKey],
    resolve: (id) => (id.equals('str:bob') ? `127.0.0.1:${bob.localAddress.port}` : undefined),
  });
  t.teardown(() => Promise.all([alice.close(), bob.close()]));
  bob.on('sessionRequest', ({ identityRemote }) => bob.acceptSessionWithUser(identityRemote));
  t.is(alice.sendMessageToUser('str:bob', 'ping', SendFlags.Reliable, 0), EResult.OK);
  const [m] = await collect(bob, 0, 1);
  t.is(m.identityPeer.toString(), 'str:alice');
  t.is(bob.sendMessageToUser(m.identityPeer, 'pong', SendFlags.Reliable, 0), EResult.OK);
  const [r] = await collect(alice, 0, 1);
  t.is(r.data.toString(), 'pong');
  t.is(r.identityPeer.toString(), 'str:bob');
});
