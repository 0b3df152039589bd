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
