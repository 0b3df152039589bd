import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

test('a process whose endpoints are closed exits by itself', async (t) => {
  const script = fileURLToPath(new URL('./fixtures/open-close.mjs', import.meta.url));
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('hung');
    }, 10_000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  t.is(code, 0, out);
  t.regex(out, /got hello\nclosed\n/);
});

test('messages(): many waits add no listeners, and they are removed when the loop ends', async (t) => {
  const { endpoint, addrOf } = await import('./helpers.mjs');
  const { SendFlags } = await import('../dist/index.mjs');
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  try {
    const closeBefore = b.listenerCount('close');
    const it = b.messages(0);
    let got = 0;
    // 20 messages sent one at a time: each arrives while the iterator waits.
    for (let i = 0; i < 20; i++) {
      a.sendMessageToUser(addrOf(b), `m${i}`, SendFlags.ReliableNoNagle, 0);
      if (i === 0) {
        // Accept the session once its request arrives, then read on.
        await new Promise((r) => b.once('sessionRequest', ({ identityRemote }) => r(b.acceptSessionWithUser(identityRemote))));
      }
      const { value } = await it.next();
      t.is(value.data.toString(), `m${i}`);
      got++;
      t.is(b.listenerCount('close'), closeBefore + 1, 'one close listener for the whole iterator');
    }
    await it.return();
    t.is(got, 20);
    t.is(b.listenerCount('close'), closeBefore);
    t.is(b.listenerCount('messages'), 0);
    t.deepEqual(
      warnings.filter((w) => w.name === 'MaxListenersExceededWarning'),
      [],
    );
  } finally {
    process.off('warning', onWarning);
    await Promise.all([a.close(), b.close()]);
  }
});

test('messages(): an AbortSignal ends a waiting loop with its reason', async (t) => {
  const { endpoint } = await import('./helpers.mjs');
  const peer = await endpoint();
  try {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const err = await t.throwsAsync(async () => {
      for await (const m of peer.messages(3, { signal: ac.signal })) t.fail(`unexpected ${m}`);
    });
    t.is(err.name, 'AbortError');
    t.is(err.code, 'ABORT_ERR');
    t.is(peer.listenerCount('messages'), 0);
    await t.throwsAsync(() => peer.messages(0, { signal: 'nope' }).next(), { instanceOf: TypeError });
  } finally {
    await peer.close();
  }
});

test('after close() no event reaches a listener, so none meets a closed endpoint', async (t) => {
  const { endpoint, addrOf } = await import('./helpers.mjs');
  const { SendFlags } = await import('../dist/index.mjs');
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => a.close());
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  let read = 0;
  let after = 0;
  let closed = false;
  b.on('messages', (ch) => {
    if (closed) after++;
    read += b.receiveMessagesOnChannel(ch, 256).length; // throws once closed
  });
  const timer = setInterval(() => {
    for (let i = 0; i < 20; i++) a.sendMessageToUser(addrOf(b), 'tick', SendFlags.ReliableNoNagle, 0);
  }, 2);
  t.teardown(() => clearInterval(timer));
  while (read < 100) await new Promise((r) => setTimeout(r, 5));
  closed = true;
  await b.close();
  await new Promise((r) => setTimeout(r, 50));
  t.is(after, 0);
});
