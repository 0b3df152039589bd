import test from 'ava';
import { once } from 'node:events';

import { EResult, Identity, SendFlags, generateKeyPair, issueCertificate, publicKeyOf } from '../dist/index.mjs';
import { collect, endpoint } from './helpers.mjs';

function named(ca, name) {
  const keys = generateKeyPair();
  const certificate = issueCertificate({ caPrivateKey: ca.privateKey, publicKey: keys.publicKey, identity: `str:${name}` });
  return { identity: `str:${name}`, privateKey: keys.privateKey, certificate };
}

test('keys and certificates: shapes and bad input', (t) => {
  const k = generateKeyPair();
  t.is(k.privateKey.length, 32);
  t.is(k.publicKey.length, 32);
  t.deepEqual(publicKeyOf(k.privateKey), k.publicKey);
  t.throws(() => publicKeyOf(new Uint8Array(5)), { instanceOf: TypeError });
  t.throws(() => issueCertificate({ caPrivateKey: k.privateKey, publicKey: k.publicKey, identity: 'ip:1.2.3.4:5' }), { instanceOf: TypeError });
  t.throws(() => issueCertificate({ caPrivateKey: k.privateKey, publicKey: k.publicKey, identity: 'str:x', validSeconds: -1 }), { instanceOf: RangeError });
  const cert = issueCertificate({ caPrivateKey: k.privateKey, publicKey: k.publicKey, identity: 'str:x' });
  t.true(cert.length > 64);
});

test('a CA certificate proves a name: the dialler sees it, the peer knows us by address', async (t) => {
  const ca = generateKeyPair();
  const bob = named(ca, 'bob');
  const b = await endpoint({ ...bob, trustedCAs: [ca.publicKey] });
  const a = await endpoint({ trustedCAs: [ca.publicKey], resolve: (id) => (id.equals('str:bob') ? `127.0.0.1:${b.localAddress.port}` : undefined) });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  t.true(b.identity.equals('str:bob'));
  const request = once(b, 'sessionRequest');
  t.is(a.sendMessageToUser('str:bob', 'hi bob', SendFlags.Reliable, 1), EResult.OK);
  const [{ identityRemote }] = await request;
  t.true(identityRemote.equals(`ip:127.0.0.1:${a.localAddress.port}`), `${identityRemote}`);
  t.true(b.acceptSessionWithUser(identityRemote));
  const [m] = await collect(b, 1, 1);
  t.is(m.data.toString(), 'hi bob');
  b.sendMessageToUser(identityRemote, 'hi back', SendFlags.Reliable, 2);
  const [r] = await collect(a, 2, 1);
  t.true(r.identityPeer.equals('str:bob'), 'the reply comes from the proven name');
});

test('a name without a trusted certificate is refused with BadCert (4003)', async (t) => {
  const ca = generateKeyPair();
  const otherCa = generateKeyPair();
  // Carol's certificate is from a CA the dialler does not trust.
  const carol = await endpoint({ ...named(otherCa, 'carol'), trustedCAs: [otherCa.publicKey] });
  // Mallory claims to be bob with a certificate from her own CA.
  const mallory = await endpoint({ ...named(otherCa, 'bob'), trustedCAs: [otherCa.publicKey] });
  const ports = { 'str:carol': carol.localAddress.port, 'str:bob': mallory.localAddress.port };
  const a = await endpoint({ trustedCAs: [ca.publicKey], resolve: (id) => `127.0.0.1:${ports[id.toString()]}` });
  t.teardown(() => Promise.all([a.close(), carol.close(), mallory.close()]));
  for (const who of ['str:carol', 'str:bob']) {
    const failed = once(a, 'sessionFailed');
    t.is(a.sendMessageToUser(who, 'secret', SendFlags.Reliable, 0), EResult.OK);
    const [{ info }] = await failed;
    t.is(info.endReason, 4003, who);
    t.true(info.identityRemote.equals(who));
  }
  t.deepEqual(mallory.receiveMessagesOnChannel(0), []);
  t.deepEqual(carol.receiveMessagesOnChannel(0), []);
});

test('allowUnauthenticated: false refuses peers without a certificate', async (t) => {
  const ca = generateKeyPair();
  const strict = await endpoint({ ...named(ca, 'server'), trustedCAs: [ca.publicKey], allowUnauthenticated: false });
  const anon = await endpoint();
  const member = await endpoint({ ...named(ca, 'member'), trustedCAs: [ca.publicKey] });
  t.teardown(() => Promise.all([strict.close(), anon.close(), member.close()]));
  const requests = [];
  strict.on('sessionRequest', (e) => {
    requests.push(e.identityRemote.toString());
    strict.acceptSessionWithUser(e.identityRemote);
  });
  const target = `ip:127.0.0.1:${strict.localAddress.port}`;
  const failed = once(anon, 'sessionFailed');
  anon.sendMessageToUser(target, 'let me in', SendFlags.Reliable, 0);
  const [{ info }] = await failed;
  t.is(info.endReason, 4003);
  member.sendMessageToUser(target, 'member here', SendFlags.Reliable, 0);
  const [m] = await collect(strict, 0, 1);
  t.is(m.data.toString(), 'member here');
  t.true(m.identityPeer.equals('str:member'));
  t.deepEqual(requests, ['str:member']);
});

test('inconsistent identity options are a TypeError', async (t) => {
  const ca = generateKeyPair();
  const bob = named(ca, 'bob');
  await t.throwsAsync(() => endpoint({ identity: 'str:bob' }), { instanceOf: TypeError, message: /certificate/ });
  await t.throwsAsync(() => endpoint({ ...bob, privateKey: generateKeyPair().privateKey }), { instanceOf: TypeError, message: /another key/ });
  await t.throwsAsync(() => endpoint({ ...bob, identity: 'str:alice' }), { instanceOf: TypeError });
  await t.throwsAsync(() => endpoint({ privateKey: new Uint8Array(3) }), { instanceOf: TypeError, message: /32 bytes/ });
  await t.throwsAsync(() => endpoint({ allowUnauthenticated: false }), { instanceOf: TypeError, message: /trustedCAs/ });
  await t.throwsAsync(() => endpoint({ trustedCAs: 'nope' }), { instanceOf: TypeError });
  const ok = await endpoint({ ...bob, identity: Identity.fromString('bob') });
  t.true(ok.identity.equals('str:bob'));
  await ok.close();
});

test('the CLI makes keys and certificates that endpoints accept', async (t) => {
  const { execFileSync } = await import('node:child_process');
  const { mkdtempSync, readFileSync, rmSync, statSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const bin = fileURLToPath(new URL('../bin/netmessages.mjs', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'nm-keys-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const run = (...args) => execFileSync(process.execPath, [bin, ...args], { cwd: dir, encoding: 'utf8' });
  run('keygen', '--out', 'ca');
  run('keygen', '--out', 'bob');
  t.is(statSync(join(dir, 'bob.key')).mode & 0o777, 0o600, 'private keys are not world-readable');
  t.regex(run('cert', '--ca', 'ca.key', '--identity', 'str:bob', '--key', 'bob.pub', '--out', 'bob.cert'), /wrote bob\.cert/);
  const hex = (f) => Buffer.from(readFileSync(join(dir, f), 'utf8').trim(), 'hex');
  const b = await endpoint({
    identity: 'str:bob',
    privateKey: hex('bob.key'),
    certificate: readFileSync(join(dir, 'bob.cert')),
    trustedCAs: [hex('ca.pub')],
  });
  const a = await endpoint({ trustedCAs: [hex('ca.pub')], resolve: () => `127.0.0.1:${b.localAddress.port}` });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', (e) => b.acceptSessionWithUser(e.identityRemote));
  a.sendMessageToUser('str:bob', 'made with the CLI', SendFlags.Reliable, 0);
  const [m] = await collect(b, 0, 1);
  t.is(m.data.toString(), 'made with the CLI');
});

test('the key CLI: refuses to overwrite without --force, refuses a public key as the CA key, no stack traces', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const bin = fileURLToPath(new URL('../bin/netmessages.mjs', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'nm-keys-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const run = (...args) => spawnSync(process.execPath, [bin, ...args], { cwd: dir, encoding: 'utf8' });
  t.regex(run('keygen', '--out', 'ca').stdout, /key id \d+/);
  const before = readFileSync(join(dir, 'ca.key'), 'utf8');
  const again = run('keygen', '--out', 'ca');
  t.is(again.status, 2);
  t.regex(again.stderr, /^netmessages keygen: ca\.key and ca\.pub already exist: pass --force/);
  t.is(readFileSync(join(dir, 'ca.key'), 'utf8'), before, 'the key was kept');
  t.is(run('keygen', '--out', 'ca', '--force').status, 0);
  t.not(readFileSync(join(dir, 'ca.key'), 'utf8'), before);
  run('keygen', '--out', 'bob');
  const pub = run('cert', '--ca', 'ca.pub', '--identity', 'str:bob', '--key', 'bob.pub', '--out', 'bob.cert');
  t.is(pub.status, 2);
  t.regex(pub.stderr, /--ca: ca\.pub is a public key; this needs the private key/);
  t.is(run('cert', '--ca', 'ca.key', '--identity', 'str:bob', '--key', 'bob.pub', '--out', 'bob.cert').status, 0);
  t.is(run('cert', '--ca', 'ca.key', '--identity', 'str:bob', '--key', 'bob.pub', '--out', 'bob.cert').status, 2, 'the certificate is kept too');
  for (const r of [pub, run('cert', '--ca', 'missing.key', '--identity', 'str:x', '--key', 'bob.pub', '--out', 'x.cert'), run('keygen', '--bogus')]) {
    t.not(r.status, 0);
    t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});
