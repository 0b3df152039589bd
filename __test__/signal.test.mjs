// The signaling server (signal/): registration proven by certificate, best-effort delivery by
// identity, the refusals and limits, the CLI, and presence shared through a real Redis.
import test from 'ava';
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

import { generateKeyPair, issueCertificate } from '../dist/index.mjs';
import { keyId, parseCertificate, parseSignedCertificate, signWith, verifyCertificate } from '../signal/cert.mjs';
import { SignalClient } from '../signal/client.mjs';
import { RedisPresence } from '../signal/redis.mjs';
import { startSignalServer } from '../signal/server.mjs';

const ca = generateKeyPair();
const otherCa = generateKeyPair();

function peer(identity, caKey = ca) {
  const k = generateKeyPair();
  return { identity, privateKey: k.privateKey, certificate: issueCertificate({ caPrivateKey: caKey.privateKey, publicKey: k.publicKey, identity }) };
}

async function server(t, extra = {}) {
  const s = await startSignalServer({ host: '127.0.0.1', port: 0, trustedCAs: [ca.publicKey], ...extra });
  t.teardown(() => s.close());
  return s;
}

async function client(t, s, p) {
  const c = new SignalClient(`ws://127.0.0.1:${s.port}`, p);
  t.teardown(() => c.close());
  return c.connect();
}

const next = (emitter, event) => once(emitter, event);

test('JS certificate checks agree with the Rust-issued certificates', (t) => {
  const p = peer('str:alice');
  const outer = parseSignedCertificate(p.certificate);
  t.is(outer.caKeyId, keyId(ca.publicKey));
  const inner = parseCertificate(outer.cert);
  t.is(inner.identity, 'str:alice');
  t.is(inner.keyType, 1);
  t.true(inner.appIds.length > 0);
  const v = verifyCertificate(p.certificate, { trustedCAs: [ca.publicKey] });
  t.is(v.identity, 'str:alice');
  t.throws(() => verifyCertificate(p.certificate, { trustedCAs: [otherCa.publicKey] }), { message: /not trusted/ });
  const tampered = Buffer.from(p.certificate);
  tampered[tampered.length - 70] ^= 1;
  t.throws(() => verifyCertificate(tampered, { trustedCAs: [ca.publicKey] }));
  t.throws(() => verifyCertificate(Buffer.from([0x22, 0x05, 1]), { trustedCAs: [ca.publicKey] }), { message: /truncated/ });
  t.throws(() => verifyCertificate(p.certificate, { trustedCAs: [ca.publicKey], appId: 424242 }), { message: /not valid for app/ });
});

test('registered peers exchange blobs by identity; the sender is the proven identity', async (t) => {
  const s = await server(t);
  const alice = await client(t, s, peer('str:alice'));
  const bob = await client(t, s, peer('str:bob'));
  t.deepEqual(s.registered().sort(), ['str:alice', 'str:bob']);
  const got = next(bob, 'signal');
  alice.send('str:bob', Buffer.from('rendezvous bytes'));
  const [from, data] = await got;
  t.is(from, 'str:alice');
  t.is(data.toString(), 'rendezvous bytes');

  const why = next(alice, 'undeliverable');
  const id = alice.send('str:carol', Buffer.from('x'));
  t.deepEqual(await why, ['str:carol', 'not-registered', id]);

  const big = next(alice, 'undeliverable');
  alice.send('str:bob', Buffer.alloc(20 * 1024));
  t.is((await big)[1], 'too-large');
});

test('registration needs a trusted certificate for that identity and the key that it names', async (t) => {
  const s = await server(t);
  const url = `ws://127.0.0.1:${s.port}`;
  const refused = async (p, code) => {
    const c = new SignalClient(url, p);
    t.teardown(() => c.close());
    const e = await t.throwsAsync(c.connect());
    t.is(e.code, code, e.message);
  };
  await refused(peer('str:mallory', otherCa), 'untrusted');
  const bob = peer('str:bob');
  await refused({ ...bob, identity: 'str:alice' }, 'wrong-identity');
  await refused({ ...bob, privateKey: generateKeyPair().privateKey }, 'bad-signature');
  await refused({ ...bob, certificate: Buffer.from('not a certificate') }, 'bad-certificate');

  // An expired certificate, built and CA-signed here (issueCertificate only makes valid ones).
  const k = generateKeyPair();
  const ident = Buffer.from('str:old');
  const cert = Buffer.concat([
    Buffer.from([0x08, 0x01, 0x12, 0x20]), k.publicKey,
    Buffer.from([0x62, ident.length]), ident,
    Buffer.from([0x4d, 0xe8, 0x03, 0x00, 0x00]),
    Buffer.from([0x50, 0x01]),
  ]);
  const sig = signWith(ca.privateKey, cert);
  const idb = Buffer.alloc(8);
  idb.writeBigUInt64LE(keyId(ca.publicKey));
  const signed = Buffer.concat([Buffer.from([0x22, cert.length]), cert, Buffer.from([0x29]), idb, Buffer.from([0x32, sig.length]), sig]);
  await refused({ identity: 'str:old', privateKey: k.privateKey, certificate: signed }, 'expired');
  t.is(s.registered().length, 0);
});

test('unregistered connections may not signal, and must register in time', async (t) => {
  const s = await server(t);
  const ws = new WebSocket(`ws://127.0.0.1:${s.port}`);
  const msgs = [];
  ws.on('message', (m) => msgs.push(JSON.parse(m)));
  await once(ws, 'open');
  ws.send(JSON.stringify({ type: 'signal', to: 'str:bob', data: '' }));
  const [code] = await once(ws, 'close');
  t.is(code, 4001);
  t.is(msgs[0].type, 'challenge');
  t.is(msgs[1].code, 'not-registered');

  const junk = new WebSocket(`ws://127.0.0.1:${s.port}`);
  await once(junk, 'open');
  junk.send('{not json');
  t.is((await once(junk, 'close'))[0], 4002);

  const quick = await server(t, { registerTimeoutMs: 200 });
  const idle = new WebSocket(`ws://127.0.0.1:${quick.port}`);
  const idleMsgs = [];
  idle.on('message', (m) => idleMsgs.push(JSON.parse(m)));
  const [idleCode] = await once(idle, 'close');
  t.is(idleCode, 4001);
  t.is(idleMsgs.at(-1).code, 'register-timeout');
});

test('signals are rate-limited per connection without dropping the connection', async (t) => {
  const s = await server(t, { signalRate: 10, signalBurst: 20 });
  const alice = await client(t, s, peer('str:alice'));
  const bob = await client(t, s, peer('str:bob'));
  let got = 0;
  let limited = 0;
  bob.on('signal', () => got++);
  alice.on('undeliverable', (_to, reason) => {
    if (reason === 'rate-limited') limited++;
  });
  const start = Date.now();
  for (let i = 0; i < 100; i++) alice.send('str:bob', Buffer.from([i]));
  // Every signal is either delivered or refused as rate-limited; none is lost silently.
  while (got + limited < 100) {
    if (Date.now() - start > 20000) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const seconds = (Date.now() - start) / 1000;
  t.is(got + limited, 100);
  // The burst of 20, plus what 10/s refilled while the server worked through them.
  t.true(got >= 20 && got <= 21 + Math.ceil(10 * seconds), `delivered ${got} in ${seconds} s`);
  t.true(limited > 0);
  // Still connected and usable once the bucket refills.
  await new Promise((r) => setTimeout(r, 200));
  const one = next(bob, 'signal');
  alice.send('str:bob', Buffer.from('later'));
  t.is((await one)[1].toString(), 'later');
});

test('a second registration of an identity replaces the first', async (t) => {
  const s = await server(t);
  const p = peer('str:alice');
  const first = await client(t, s, p);
  const replaced = next(first, 'replaced');
  await client(t, s, p);
  await replaced;
  t.deepEqual(s.registered(), ['str:alice']);
});

test('npx netmessages signal: starts, serves, stops on SIGTERM', async (t) => {
  const bin = fileURLToPath(new URL('../bin/netmessages.mjs', import.meta.url));
  const child = spawn(process.execPath, [bin, 'signal', '--host', '127.0.0.1', '--port', '0', '--trusted-ca', ca.publicKey.toString('hex')], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let out = '';
  const port = await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
  const c = new SignalClient(`ws://127.0.0.1:${port}`, peer('str:cli'));
  await c.connect();
  c.close();
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  t.is(code, 0);

  const usage = execFileSync(process.execPath, [bin, 'signal', '--help'], { encoding: 'utf8' });
  t.regex(usage, /--trusted-ca/);
});

async function freePort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

function redisServerMissing() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'redis-server is not installed (apt-get install redis-server)';
  }
}

test('two servers share presence through a real Redis', async (t) => {
  const missing = redisServerMissing();
  if (missing) {
    t.log(`SKIP: ${missing}`);
    t.pass();
    return;
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'nm-redis-'));
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  t.teardown(() => {
    redis.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const url = `redis://127.0.0.1:${port}`;
  // Wait until it accepts connections.
  for (let i = 0; ; i++) {
    try {
      execFileSync('redis-cli', ['-p', String(port), 'ping'], { stdio: 'ignore' });
      break;
    } catch {
      if (i > 100) throw new Error('redis-server did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const s1 = await server(t, { adapter: new RedisPresence(url, { serverId: 'one' }) });
  const s2 = await server(t, { adapter: new RedisPresence(url, { serverId: 'two' }) });
  const alicePeer = peer('str:alice');
  const alice = await client(t, s1, alicePeer);
  const bob = await client(t, s2, peer('str:bob'));

  const got = next(bob, 'signal');
  alice.send('str:bob', Buffer.from('across servers'));
  const [from, data] = await got;
  t.is(from, 'str:alice');
  t.is(data.toString(), 'across servers');
  const back = next(alice, 'signal');
  bob.send('str:alice', Buffer.from('and back'));
  t.is((await back)[1].toString(), 'and back');
  t.is(s1.stats.remoteDelivered + s2.stats.remoteDelivered, 2);

  const why = next(alice, 'undeliverable');
  alice.send('str:nobody', Buffer.from('x'));
  t.is((await why)[1], 'not-registered');

  // Alice moves to the other server: the old connection is told and closed.
  const replaced = next(alice, 'replaced');
  const alice2 = await client(t, s2, alicePeer);
  await replaced;
  const again = next(alice2, 'signal');
  bob.send('str:alice', Buffer.from('to the new one'));
  t.is((await again)[1].toString(), 'to the new one');

  // Redis goes away: peers on one server still reach each other; remote sends are refused
  // as unavailable, not queued, and nobody is disconnected.
  redis.kill('SIGKILL');
  await once(redis, 'exit');
  const carol = await client(t, s2, peer('str:carol'));
  const local = next(carol, 'signal');
  bob.send('str:carol', Buffer.from('same server'));
  t.is((await local)[1].toString(), 'same server');
  const down = next(bob, 'undeliverable');
  bob.send('str:somewhere-else', Buffer.from('x'));
  t.is((await down)[1], 'unavailable');
});
