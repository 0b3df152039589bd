// Node habits (issue 17): Symbol.asyncDispose, unref()/ref(), a drain-style wait after
// LimitExceeded (whenWritable and the 'writable' event), the peer's polite close as an event.
import test from 'ava';
import { execFile } from 'node:child_process';
import { once } from 'node:events';

import { EResult, NetmessagesError, SendFlags } from '../dist/index.mjs';
import { addrOf, collect, endpoint } from './helpers.mjs';

const dist = JSON.stringify(new URL('../dist/index.mjs', import.meta.url).href);

function node(script, ms = 10_000) {
  return new Promise((resolve) => {
    const started = Date.now();
    execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: ms, killSignal: 'SIGKILL' }, (e, stdout, stderr) =>
      resolve({ code: e ? (e.killed ? 'killed' : e.code) : 0, stdout, stderr, ms: Date.now() - started }),
    );
  });
}

test('Symbol.asyncDispose closes the endpoint', async (t) => {
  const p = await endpoint();
  t.is(typeof p[Symbol.asyncDispose], 'function');
  await p[Symbol.asyncDispose]();
  t.is(p.sendMessageToUser('ip:127.0.0.1:9', 'x'), EResult.InvalidState);
  await p.close(); // still safe
});

test('unref(): an open endpoint does not keep the process alive; ref() does again', async (t) => {
  const open = `import { NetworkingMessages } from ${dist};
    const p = await NetworkingMessages.create({ bind: '127.0.0.1:0' });`;
  const unrefd = await node(`${open} p.unref(); console.log(p.hasRef());`);
  t.is(unrefd.code, 0, unrefd.stderr);
  t.is(unrefd.stdout.trim(), 'false');
  const held = await node(`${open} console.log('open');`, 3000);
  t.is(held.code, 'killed', 'control: a referenced endpoint keeps the process running');
  const reffed = await node(`${open} p.unref().ref(); setTimeout(() => p.close(), 500);`);
  t.is(reffed.code, 0);
  t.true(reffed.ms >= 450, `ref() kept it alive until close (${reffed.ms} ms)`);
});

test("whenWritable resolves once a full send buffer drains; 'writable' is posted too", async (t) => {
  const [a, b] = await Promise.all([endpoint({ config: { sendBufferSize: 64 * 1024 } }), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  const to = addrOf(b);
  await t.notThrowsAsync(a.whenWritable(to), 'room at once: no session yet');
  const chunk = Buffer.alloc(8000, 1);
  let sent = 0;
  while (a.sendMessageToUser(to, chunk, SendFlags.Reliable, 0) === EResult.OK) sent++;
  t.is(a.lastError().result, EResult.LimitExceeded);
  const writable = once(a, 'writable');
  await a.whenWritable(to);
  const [{ identityRemote }] = await writable;
  t.true(identityRemote.equals(to));
  t.is(a.sendMessageToUser(to, chunk, SendFlags.Reliable, 0), EResult.OK, 'room again');
  sent++;
  const got = await collect(b, 0, sent, 10_000);
  t.is(got.length, sent);
});

test('whenWritable: rejects when the endpoint closes, when the session ends, and on abort', async (t) => {
  const a = await endpoint({ config: { sendBufferSize: 16 * 1024, timeoutInitial: 400 } });
  // Nobody answers at port 9: the buffer never drains, and the session fails.
  while (a.sendMessageToUser('ip:127.0.0.1:9', Buffer.alloc(4000), SendFlags.Reliable, 0) === EResult.OK);
  const ac = new AbortController();
  const aborted = a.whenWritable('ip:127.0.0.1:9', { signal: ac.signal });
  ac.abort();
  await t.throwsAsync(aborted, { name: 'AbortError' });
  const ended = await t.throwsAsync(a.whenWritable('ip:127.0.0.1:9'), { instanceOf: NetmessagesError });
  t.is(ended.code, 'ERR_NETMESSAGES_SESSION_ENDED');
  t.is(ended.result, EResult.NoConnection);
  // Now a wait that the close ends.
  const b = await endpoint({ config: { sendBufferSize: 16 * 1024 } });
  while (b.sendMessageToUser('ip:127.0.0.1:9', Buffer.alloc(4000), SendFlags.Reliable, 0) === EResult.OK);
  const pending = b.whenWritable('ip:127.0.0.1:9');
  const closing = b.close();
  await t.throwsAsync(pending, { instanceOf: NetmessagesError, code: 'ERR_NETMESSAGES_CLOSED' });
  await Promise.all([closing, a.close()]);
  await t.throwsAsync(b.whenWritable('ip:127.0.0.1:9'), { code: 'ERR_NETMESSAGES_CLOSED' });
});

test("the peer's polite close is a 'sessionClosed' event (not 'sessionFailed')", async (t) => {
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => a.close());
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  a.sendMessageToUser(addrOf(b), 'hi', SendFlags.Reliable, 0);
  await collect(b, 0, 1);
  const failed = [];
  a.on('sessionFailed', (e) => failed.push(e));
  const closed = once(a, 'sessionClosed');
  await b.close();
  const [{ info }] = await closed;
  t.true(info.identityRemote.equals(addrOf(b)));
  t.is(info.state, 4);
  t.is(typeof info.endReason, 'number');
  t.deepEqual(failed, []);
});
