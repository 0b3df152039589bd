// Smoke tests of the examples: each runs as a user would run it, on loopback, bounded in time.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function run(args, ms) {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: root, timeout: ms, killSignal: 'SIGKILL' }, (err, stdout, stderr) =>
      resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr }),
    );
  });
}

/** A child with line-buffered stdout and a way to wait for a line matching a pattern. */
function child(args) {
  const p = spawn(process.execPath, args, { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = [];
  let err = '';
  let buf = '';
  const waiters = new Set();
  p.stdout.setEncoding('utf8');
  p.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    for (const w of waiters) w();
  });
  p.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) => p.on('exit', (code, signal) => resolve(code ?? signal)));
  const waitLine = (re, ms = 10000) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const hit = lines.find((l) => re.test(l));
        if (hit !== undefined) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no line matching ${re} in:\n${lines.join('\n')}\nstderr:\n${err}`));
      }, ms);
      waiters.add(check);
      check();
    });
  return { p, lines, waitLine, exited, stderr: () => err };
}

test('examples/chat: two instances chat by identity over pipes', async (t) => {
  t.timeout(30000);
  const chat = path.join(root, 'examples/chat/chat.mjs');
  const a = child([chat, '--listen', '127.0.0.1:0']);
  t.teardown(() => a.p.kill('SIGKILL'));
  const listening = await a.waitLine(/^listening on ip:127\.0\.0\.1:\d+$/);
  const port = listening.split(':').pop();

  const b = child([chat, '--connect', `127.0.0.1:${port}`]);
  t.teardown(() => b.p.kill('SIGKILL'));
  const talking = await b.waitLine(/^talking to ip:127\.0\.0\.1:\d+ as ip:127\.0\.0\.1:\d+$/);
  const bId = talking.split(' as ').pop();

  b.p.stdin.write('hello from b\n');
  await a.waitLine(new RegExp(`^\\* ${bId.replace(/[.[\]]/g, '\\$&')} joined$`));
  t.truthy(await a.waitLine(new RegExp(`^\\[${bId.replace(/[.[\]]/g, '\\$&')}\\] hello from b$`)));

  a.p.stdin.write('hi b, this is a\n');
  t.truthy(await b.waitLine(new RegExp(`^\\[ip:127\\.0\\.0\\.1:${port}\\] hi b, this is a$`)));

  // A third peer joins and leaves with Ctrl-C: it closes politely, exits 0, and both others
  // forget it.
  const c = child([chat, '--connect', `127.0.0.1:${port}`]);
  t.teardown(() => c.p.kill('SIGKILL'));
  const cId = (await c.waitLine(/^talking to /)).split(' as ').pop();
  c.p.stdin.write('hello from c\n');
  await a.waitLine(new RegExp(`^\\* ${cId.replace(/[.[\]]/g, '\\$&')} joined$`));
  c.p.kill('SIGINT');
  t.is(await c.exited, 0, c.stderr());
  await a.waitLine(new RegExp(`^\\* ${cId.replace(/[.[\]]/g, '\\$&')} left$`));
  a.p.stdin.write('/peers\n');
  await a.waitLine(new RegExp(`^${bId.replace(/[.[\]]/g, '\\$&')}$`));
  t.false(a.lines.includes(cId), 'c is no longer listed');

  // b quits with /quit: a sees it leave, then has nobody to talk to.
  b.p.stdin.write('/quit\n');
  t.is(await b.exited, 0, b.stderr());
  await a.waitLine(new RegExp(`^\\* ${bId.replace(/[.[\]]/g, '\\$&')} left$`));
  a.p.stdin.write('anyone?\n');
  await a.waitLine(/^\* nobody to talk to yet/);
  a.p.stdin.end();
  t.is(await a.exited, 0, a.stderr());
});

test('examples/chat: a send that fails prints the EResult name and the reason', async (t) => {
  t.timeout(30000);
  const chat = path.join(root, 'examples/chat/chat.mjs');
  // A line over 512 KiB cannot be one message: the chat says so, by name and reason.
  const b = child([chat, '--connect', '127.0.0.1:9']);
  t.teardown(() => b.p.kill('SIGKILL'));
  await b.waitLine(/^talking to ip:127\.0\.0\.1:9 /);
  b.p.stdin.write(`${'x'.repeat(600 * 1024)}\n`);
  t.truthy(await b.waitLine(/^\* could not send to ip:127\.0\.0\.1:9: InvalidParam \(a message is at most 512 KiB/));
  b.p.kill('SIGINT');
  t.is(await b.exited, 0, b.stderr());
});

test('examples/dedicated-server: server + bots run and the summary checks out', async (t) => {
  t.timeout(30000);
  const { code, stdout, stderr } = await run([path.join(root, 'examples/dedicated-server/server.mjs'), '--bots', '3', '--seconds', '3'], 25000);
  t.is(code, 0, `${stdout}\n${stderr}`);
  t.regex(stdout, /^server listening on ip:127\.0\.0\.1:\d+/m);
  t.regex(stdout, /^\[ {2}\d+s\] tick \d+ {2}players 3 /m, 'live stats line');
  const summary = stdout.split('\n').find((l) => l.startsWith('summary:'));
  t.truthy(summary, stdout);
  t.regex(summary, /3 players/);
  t.regex(summary, /3 joined, 3 left, 0 timed out/, 'each bot counted gone when its session ended');
  t.regex(summary, /position mismatches 0; send errors 0; ok$/);
  t.true(Number(/snapshots per bot min (\d+)/.exec(summary)[1]) > 20, summary);
});

test('examples/loadtest via the bin: `netmessages loadtest` reports throughput, RTT and loss', async (t) => {
  t.timeout(30000);
  const bin = path.join(root, 'bin/netmessages.mjs');
  const { code, stdout, stderr } = await run([bin, 'loadtest', '--peers', '6', '--rate', '100', '--seconds', '2', '--size', '200'], 25000);
  t.is(code, 0, `${stdout}\n${stderr}`);
  // The last line comes once the echoes are in: at 2.0 s, or a little later on a busy machine.
  t.regex(stderr, /\[#{30}\] +2\.\ds/, 'progress bar reaches 100%');
  t.regex(stdout, /^loadtest: 6 peers x 100 msg\/s x 2 s, 200 B unreliable -> 127\.0\.0\.1:\d+ \(6 sessions\)$/m);
  t.regex(stdout, /throughput +[\d.]+k? msg\/s echoed/);
  t.regex(stdout, /rtt +p50 [\d.]+ ms {2}p90 [\d.]+ ms {2}p99 [\d.]+ ms {2}max [\d.]+ ms/);
  t.regex(stdout, /loss +[\d.]+% \(sent 1200, echoed \d+, send errors 0\)/);

  const json = await run([bin, 'loadtest', '--peers', '4', '--rate', '50', '--seconds', '1', '--reliable', '--size', '2000', '--json'], 25000);
  t.is(json.code, 0, `${json.stdout}\n${json.stderr}`);
  const r = JSON.parse(json.stdout);
  t.is(r.sent, 200);
  t.is(r.received, 200, 'reliable: every message echoed');
  t.is(r.lossPercent, 0);
  t.is(r.sessions, 4);
  t.true(r.msgsPerSec > 0 && r.mbPerSec > 0);
  for (const k of ['p50', 'p90', 'p99', 'max']) t.true(r.rttMs[k] > 0, k);
  t.true(r.rttMs.p50 <= r.rttMs.p99);
});

test('loadtest: Ctrl-C stops the run early and still prints the summary', async (t) => {
  t.timeout(30000);
  const bin = path.join(root, 'bin/netmessages.mjs');
  const lt = child([bin, 'loadtest', '--peers', '3', '--rate', '100', '--seconds', '60']);
  t.teardown(() => lt.p.kill('SIGKILL'));
  // The progress bar goes to stderr once a second when it is not a terminal.
  await new Promise((resolve) => {
    const poll = setInterval(() => {
      if (/sent \d/.test(lt.stderr())) {
        clearInterval(poll);
        resolve();
      }
    }, 20);
  });
  const started = Date.now();
  lt.p.kill('SIGINT');
  t.is(await lt.exited, 0, lt.stderr());
  t.true(Date.now() - started < 10000, 'it stopped well before its 60 s');
  const out = lt.lines.join('\n');
  t.regex(out, /^loadtest: 3 peers x 100 msg\/s x 60 s, 64 B unreliable -> 127\.0\.0\.1:\d+ \(3 sessions\) \[interrupted after \d+\.\d s\]$/m);
  t.regex(out, /throughput +[\d.]+k? msg\/s echoed/);
  t.regex(out, /rtt +p50 [\d.]+ ms/);
});

test('loadtest --serve runs an echo server that loadtest --target drives', async (t) => {
  t.timeout(30000);
  const bin = path.join(root, 'bin/netmessages.mjs');
  const server = child([bin, 'loadtest', '--serve', '127.0.0.1:0']);
  t.teardown(() => server.p.kill('SIGKILL'));
  const line = await server.waitLine(/^echo server listening on ip:127\.0\.0\.1:\d+$/);
  const target = line.split('ip:').pop();
  const r = await run([bin, 'loadtest', '--target', target, '--peers', '3', '--rate', '50', '--seconds', '1', '--reliable', '--json'], 20000);
  t.is(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const res = JSON.parse(r.stdout);
  t.is(res.target, target);
  t.is(res.received, res.sent);
  t.is(res.sessions, 3);
  server.p.kill('SIGTERM');
  // POSIX: SIGTERM is handled (closes the endpoint, exits 0); Windows has no such signal.
  if (process.platform !== 'win32') t.is(await server.exited, 0, server.stderr());
});

test('the netmessages bin: help, unknown command, bad option', async (t) => {
  const bin = path.join(root, 'bin/netmessages.mjs');
  const help = await run([bin, '--help'], 10000);
  t.is(help.code, 0);
  t.regex(help.stdout, /loadtest/);
  const unknown = await run([bin, 'nope'], 10000);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown command 'nope'/);
  const bad = await run([bin, 'loadtest', '--peers', 'x'], 10000);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--peers must be a number/);
});

test('npm start still runs the original demo (examples/demo.mjs)', async (t) => {
  const pkg = JSON.parse((await import('node:fs')).readFileSync(path.join(root, 'package.json'), 'utf8'));
  t.regex(pkg.scripts.start, /node examples\/demo\.mjs$/);
});

test('examples/sockets-chat: a server relays lines between two clients, /nick, departures, shutdown', async (t) => {
  t.timeout(40000);
  const chat = path.join(root, 'examples/sockets-chat/chat.mjs');
  const server = child([chat, '--server', '--port', '0']);
  t.teardown(() => server.p.kill('SIGKILL'));
  const port = Number((await server.waitLine(/^listening on port \d+/)).match(/\d+$/)[0]);
  const a = child([chat, '--client', `127.0.0.1:${port}`]);
  t.teardown(() => a.p.kill('SIGKILL'));
  await a.waitLine(/^Welcome, Traveller\d+/);
  await a.waitLine(/^Nobody else is here yet/);
  const b = child([chat, '--client', `127.0.0.1:${port}`]);
  t.teardown(() => b.p.kill('SIGKILL'));
  await b.waitLine(/^1 others are here:/);
  await a.waitLine(/^Traveller\d+ has joined\./);
  a.p.stdin.write('/nick alice\n');
  await a.waitLine(/^You are now known as alice/);
  await b.waitLine(/ is now known as alice$/);
  a.p.stdin.write('hello from alice\n');
  await b.waitLine(/^alice: hello from alice$/);
  await server.waitLine(/^alice: hello from alice$/);
  a.p.stdin.write('/quit\n');
  t.is(await a.exited, 0, a.stderr());
  await b.waitLine(/^alice left\.$/);
  server.p.stdin.write('/quit\n');
  await b.waitLine(/^The server is shutting down\. Goodbye\.$/);
  await b.waitLine(/^connection closed: server shutdown$/);
  t.is(await b.exited, 0, b.stderr());
  t.is(await server.exited, 0, server.stderr());
});
