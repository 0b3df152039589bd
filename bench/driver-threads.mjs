#!/usr/bin/env node
// One server endpoint on 1 and on 2 driver threads (`driverThreads`, one port, SO_REUSEPORT
// shards), the same load from the Rust load generator (crates/loadgen: real handshakes and
// encryption, a loopback source address per session), measured alike: messages the
// server's JS received per second, the server's CPU, and the CPU of each of its threads
// (from /proc), so the split of the work over the driver threads is seen, not assumed.
//
//   npm run bench:threads                      2,000 sessions x 100 msg/s, 8 s windows
//   npm run bench:threads -- --sessions 4000 --rate 50 --seconds 10 --repeat 3
//   npm run bench:threads -- --json target/driver-threads.json
//
// Runs alternate (1, 2, 1, 2, ...) so a machine that gets busier or quieter mid-run
// affects both alike. Linux only (driver threads and /proc).
import { fork, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const O = {
  sessions: Number(arg('sessions', 2000)),
  rate: Number(arg('rate', 100)),
  seconds: Number(arg('seconds', 8)),
  warmup: Number(arg('warmup', 3)),
  repeat: Number(arg('repeat', 2)),
  threads: String(arg('threads', '1,2')).split(',').map(Number),
  json: arg('json', null),
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TICK = 100; // USER_HZ: /proc's clock ticks per second on Linux

if (process.platform !== 'linux') {
  console.log('driver threads and /proc are Linux only: nothing to measure here');
  process.exit(0);
}
const loadgen = path.join(root, 'target', 'release', 'netmessages-loadgen');
const built = spawnSync('cargo', ['build', '--release', '--quiet', '-p', 'netmessages-loadgen'], { cwd: root, stdio: 'inherit' });
if (built.status !== 0) throw new Error('cannot build netmessages-loadgen');

/** A bench child (bench/child.mjs) with the IPC steps the many-peers row uses. */
function child(role, opts) {
  const p = fork(path.join(here, 'child.mjs'), [role, JSON.stringify(opts)], { execArgv: ['--expose-gc'], stdio: 'inherit' });
  const inbox = [];
  const waiting = [];
  p.on('message', (m) => {
    if (m?.type === 'error') {
      console.error(`${role}: ${m.error}`);
      process.exitCode = 1;
    }
    const i = waiting.findIndex((w) => w.type === m?.type);
    if (i >= 0) waiting.splice(i, 1)[0].resolve(m);
    else inbox.push(m);
  });
  return {
    pid: p.pid,
    send: (m) => p.connected && p.send(m),
    wait: (type, ms = 60000) =>
      new Promise((resolve, reject) => {
        const i = inbox.findIndex((m) => m.type === type);
        if (i >= 0) return resolve(inbox.splice(i, 1)[0]);
        const t = setTimeout(() => reject(new Error(`${role}: no ${type} within ${ms} ms`)), ms);
        waiting.push({ type, resolve: (m) => (clearTimeout(t), resolve(m)) });
      }),
    kill: () => p.kill('SIGKILL'),
  };
}

/** CPU ticks of each thread of `pid`, by thread name. */
function threadTicks(pid) {
  const out = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const name = stat.slice(stat.indexOf('(') + 1, close);
      const f = stat.slice(close + 2).split(' ');
      // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the name.
      out[name] = (out[name] ?? 0) + Number(f[11]) + Number(f[12]);
    } catch {}
  }
  return out;
}

async function one(threads) {
  const budget = (O.seconds + O.warmup + 120) * 1000;
  const server = child('many-server', { impl: 'netmessages', driverThreads: threads, timeoutMs: budget });
  const client = child('many-client', { impl: 'netmessages', count: O.sessions, rate: O.rate, size: 32, timeoutMs: budget, loadgen });
  try {
    const { port } = await server.wait('ready');
    await client.wait('ready');
    client.send({ type: 'peer', port });
    await client.wait('peered');
    client.send({ type: 'hello' });
    await client.wait('helloed', 90000);
    await sleep(500);
    client.send({ type: 'go' });
    await sleep(O.warmup * 1000);
    server.send({ type: 'mark' });
    await server.wait('mark');
    const t0 = threadTicks(server.pid);
    await sleep(O.seconds * 1000);
    server.send({ type: 'mark' });
    const m = await server.wait('mark', 10000);
    const t1 = threadTicks(server.pid);
    client.send({ type: 'stop' });
    const c = await client.wait('result', 30000);
    const perThread = {};
    for (const [name, ticks] of Object.entries(t1)) {
      const pct = (((ticks - (t0[name] ?? 0)) / TICK) * 100000) / m.windowMs;
      if (pct >= 0.5) perThread[name] = Math.round(pct * 10) / 10;
    }
    return {
      threads,
      sessions: m.sessions,
      msgsPerSec: Math.round(m.msgsPerSec),
      offeredPerSec: O.sessions * O.rate,
      loadgenSentPerSec: Math.round((c.sent * 1000) / c.sendingMs),
      serverCpuPercent: Math.round(m.cpuPercent * 10) / 10,
      perThreadCpuPercent: perThread,
    };
  } finally {
    server.send({ type: 'report' });
    await server.wait('result', 5000).catch(() => {});
    server.kill();
    client.kill();
  }
}

const runs = [];
for (let r = 0; r < O.repeat; r++) {
  for (const n of O.threads) {
    const res = await one(n);
    runs.push(res);
    console.log(JSON.stringify(res));
  }
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const summary = {};
for (const n of O.threads) {
  const mine = runs.filter((x) => x.threads === n);
  summary[n] = {
    msgsPerSec: median(mine.map((x) => x.msgsPerSec)),
    serverCpuPercent: median(mine.map((x) => x.serverCpuPercent)),
    loadgenSentPerSec: median(mine.map((x) => x.loadgenSentPerSec)),
  };
}
console.log(`\n${O.sessions} sessions x ${O.rate} msg/s offered (${O.sessions * O.rate} msg/s), medians of ${O.repeat}:`);
for (const n of O.threads) {
  const s = summary[n];
  console.log(`  driverThreads ${n}: ${s.msgsPerSec} msg/s received (load generator sent ${s.loadgenSentPerSec}/s), server CPU ${s.serverCpuPercent} %`);
}
if (O.json) writeFileSync(O.json, JSON.stringify({ options: O, runs, summary }, null, 2));
