#!/usr/bin/env node
// netmessages benchmark suite: every scenario runs the library and its baselines side by side
// in the same run, each side in its own child process (bench/child.mjs), on loopback only.
//
//   node bench/run.mjs [--quick | --smoke] [--only=id,id] [--peers=N] [--out-dir=DIR]
//
// Prints a table, writes DIR/<timestamp>.json and DIR/latest.svg (DIR: bench/results).
// See docs/BENCHMARKS.md.
import { spawnSync } from 'node:child_process';
import { fork, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { markdownTable, svgChart, tableRows, textTable } from './report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const CHILD = path.join(here, 'child.mjs');
if (!existsSync(path.join(root, 'dist/index.mjs'))) {
  console.error('bench: dist/index.mjs is missing; run `npm run build` first');
  process.exit(1);
}

// ---------------------------------------------------------------- options
const args = process.argv.slice(2);
const flag = (n) => args.includes(`--${n}`);
const opt = (n) => args.find((a) => a.startsWith(`--${n}=`))?.slice(n.length + 3);
const mode = flag('smoke') ? 'smoke' : flag('quick') ? 'quick' : 'full';
const T = {
  smoke: { warmupMs: 300, windowMs: 1000, manyWarmupMs: 800, manyWindowMs: 1000, manyIdleMs: 500, peers: 20, manyProcs: 1 },
  // quick: under 2 minutes in all on 2 cores (the GNS rows take ~45 s of it); the idle phase
  // still outlasts a keepalive interval (timeoutConnected / 3 = 3.3 s).
  quick: { warmupMs: 500, windowMs: 1500, manyWarmupMs: 1500, manyWindowMs: 3000, manyIdleMs: 4000, peers: 500, manyProcs: 2 },
  full: { warmupMs: 2000, windowMs: 10000, manyWarmupMs: 4000, manyWindowMs: 10000, manyIdleMs: 6000, peers: 10000, manyProcs: 4 },
}[mode];
if (opt('peers')) T.peers = Number(opt('peers'));
// The many-peers clients: Node endpoints (one per peer, in T.manyProcs processes) cannot
// drive more than ~3,000 peers at 20 msg/s on 2 cores; the Rust load generator
// (crates/loadgen: real sessions, real handshakes and encryption, a socket and a loopback
// address per peer) can. It is used past 3,000 peers, or with --loadgen.
const useLoadgen = flag('loadgen') || (T.peers > 3000 && !flag('no-loadgen'));
const loadgenBin = path.join(here, '..', 'target', 'release', 'netmessages-loadgen');
const only = opt('only')?.split(',') ?? (mode === 'smoke' ? ['unreliable-32B'] : null);
const outDir = path.resolve(opt('out-dir') ?? path.join(here, 'results'));
// Extra netmessages config for the throughput scenarios, e.g. --nm-config='{"recvBufferMessages":100000}'
const nmConfig = opt('nm-config') ? JSON.parse(opt('nm-config')) : undefined;
const smokeImpls = mode === 'smoke' ? new Set(['netmessages', 'dgram']) : null;

const log = (...a) => console.error('[bench]', ...a);
const T0 = Date.now();
const debug = process.env.BENCH_DEBUG ? (...a) => console.error(`[bench +${Date.now() - T0}ms]`, ...a) : () => {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- child management
const live = new Set();
function killAll() {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
  live.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

// `<impl>+driver-receive`: the same implementation with every datagram read on the driver
// thread (NETMESSAGES_JS_RECEIVE=0 in the child's environment), to compare with reading on
// the JS thread (docs/ARCHITECTURE.md, "Receive path"). `--driver-receive` adds these
// variants to every scenario.
const DRIVER_RECEIVE = '+driver-receive';
const driverReceive = flag('driver-receive');
function splitDriverReceive(name) {
  return name.endsWith(DRIVER_RECEIVE) ? { name: name.slice(0, -DRIVER_RECEIVE.length), off: true } : { name, off: false };
}

function spawn(role, opts, execArgv = []) {
  const timeoutMs = opts.timeoutMs ?? 60000;
  const { name, off } = splitDriverReceive(opts.impl ?? '');
  const env = off ? { ...process.env, NETMESSAGES_JS_RECEIVE: '0' } : process.env;
  const child = fork(CHILD, [role, JSON.stringify({ ...opts, impl: opts.impl === undefined ? undefined : name, timeoutMs })], {
    execArgv,
    env,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  live.add(child);
  const inbox = [];
  const waiters = [];
  let failure;
  const deliver = () => {
    for (let i = 0; i < waiters.length; ) {
      const w = waiters[i];
      const k = inbox.findIndex((m) => m.type === w.type);
      if (failure !== undefined) {
        waiters.splice(i, 1);
        w.reject(failure);
      } else if (k >= 0) {
        waiters.splice(i, 1);
        w.resolve(inbox.splice(k, 1)[0]);
      } else i++;
    }
  };
  child.on('message', (m) => {
    debug(role, opts.impl, '->', m?.type);
    if (m?.type === 'error') failure = new Error(`${role}/${opts.impl}: ${m.error}`);
    else inbox.push(m);
    deliver();
  });
  child.on('exit', (code, sig) => {
    live.delete(child);
    if (failure === undefined && code !== 0) failure = new Error(`${role}/${opts.impl} exited with ${code ?? sig}`);
    else if (failure === undefined) failure = new Error(`${role}/${opts.impl} exited`);
    deliver();
  });
  return {
    child,
    send: (m) => child.connected && child.send(m),
    wait(type, ms = 10000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${role}/${opts.impl}: no '${type}' within ${ms} ms`)), ms);
        waiters.push({
          type,
          resolve: (v) => (clearTimeout(timer), resolve(v)),
          reject: (e) => (clearTimeout(timer), reject(e)),
        });
        deliver();
      });
    },
    async end() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.connected && child.send({ type: 'exit' });
      await Promise.race([gone, sleep(1500)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

async function withChildren(fn) {
  const kids = [];
  const mk = (...a) => {
    const k = spawn(...a);
    kids.push(k);
    return k;
  };
  try {
    return await fn(mk);
  } finally {
    await Promise.all(kids.map((k) => k.end()));
  }
}

// ---------------------------------------------------------------- scenario runners
// The subject again with the send rate raised from Steam's default (256 KiB/s min = max),
// so the transport's own costs show instead of the configured rate.
const FAST_RATE = 1_000_000_000;
// `-batch`: the same, sending with sendMessages (Steam's SendMessages), 256 messages a call,
// instead of one sendMessageToUser call per message.
const FAST = { sendRateMin: FAST_RATE, sendRateMax: FAST_RATE };
const VARIANTS = {
  'netmessages-fast': { impl: 'netmessages', config: FAST },
  'netmessages-batch': { impl: 'netmessages', config: FAST, batch: true },
  // The object-free batch APIs: sendMessagesFromBuffer and receiveBatchOnChannel.
  'netmessages-buffer': { impl: 'netmessages', config: FAST, bufferApi: true },
  // The connection API (NetworkingSockets) on the same transport.
  'netsockets-fast': { impl: 'netsockets', config: FAST },
  netsockets: { impl: 'netsockets', config: {} },
};
function resolveImpl(full) {
  const { name, off } = splitDriverReceive(full);
  const suffix = off ? DRIVER_RECEIVE : '';
  const v = VARIANTS[name];
  if (v === undefined) return { impl: name + suffix, config: nmConfig, batch: false };
  return { impl: v.impl + suffix, config: { ...v.config, ...(nmConfig ?? {}) }, batch: v.batch === true, bufferApi: v.bufferApi === true };
}

async function throughput(name, o) {
  const { impl, config, batch, bufferApi } = resolveImpl(name);
  return withChildren(async (mk) => {
    const budget = T.warmupMs + T.windowMs + 15000;
    const base = { impl, size: o.size, flags: o.flags, mode: o.udxMode, checkSeq: o.checkSeq, config, batch, bufferApi, timeoutMs: budget };
    const recv = mk('tp-recv', base);
    const r = await recv.wait('ready');
    const snd = mk('tp-send', base);
    const s = await snd.wait('ready');
    recv.send({ type: 'peer', port: s.port });
    await recv.wait('peered');
    snd.send({ type: 'peer', port: r.port });
    await snd.wait('peered');
    snd.send({ type: 'go' });
    await sleep(T.warmupMs);
    recv.send({ type: 'mark' });
    await recv.wait('mark');
    await sleep(T.windowMs);
    recv.send({ type: 'mark' });
    const m = await recv.wait('mark', 5000);
    snd.send({ type: 'stop' });
    const sres = await snd.wait('result', 8000);
    await sleep(300); // let the last datagrams land
    recv.send({ type: 'report' });
    const rres = await recv.wait('result', 8000);
    const out = {
      msgSize: o.size,
      msgsPerSec: m.msgsPerSec,
      mbPerSec: m.mbPerSec,
      windowMs: m.windowMs,
      receiverCpuPercent: m.cpuPercent,
      sent: sres.sent,
      received: rres.totalMsgs,
      lossPercent: sres.sent > 0 ? Math.max(0, 100 * (1 - rres.totalMsgs / sres.sent)) : null,
      backpressureWaits: sres.backpressure,
      otherSendResults: sres.otherResults,
    };
    if (sres.sessionStatus !== undefined) out.sessionStatusAtStop = sres.sessionStatus;
    if (o.flags & Reliable) {
      // Reliable data still in flight (or held by the send rate) at the end is not "lost":
      // report it as not delivered by the end of the run, with the sequence check beside it.
      out.undeliveredPercent = out.lossPercent;
      delete out.lossPercent;
    }
    if (config !== undefined) out.config = config;
    if (impl === 'tcp' || (impl === 'udx' && o.udxMode !== 'message')) {
      // Byte streams: "sent" counts write() calls, "received" whole messages' worth of bytes.
      out.lossPercent = null;
    }
    if (rres.seqGaps !== undefined) Object.assign(out, { seqGaps: rres.seqGaps, seqReorders: rres.seqReorders });
    return out;
  });
}

async function pingPong(impl, o) {
  return withChildren(async (mk) => {
    const budget = T.warmupMs + T.windowMs + 15000;
    const base = { impl, size: o.size, warmupMs: T.warmupMs, windowMs: T.windowMs, timeoutMs: budget };
    const server = mk('pp-server', base);
    const sv = await server.wait('ready');
    const client = mk('pp-client', base);
    await client.wait('ready');
    client.send({ type: 'peer', port: sv.port });
    await client.wait('peered');
    client.send({ type: 'go' });
    const res = await client.wait('result', T.warmupMs + T.windowMs + 8000);
    server.send({ type: 'report' });
    await server.wait('result', 5000).catch(() => {});
    const { type: _t, ...rest } = res;
    return { msgSize: o.size, ...rest, roundTripsPerSec: res.roundTrips / (T.windowMs / 1000) };
  });
}

/** Builds the load generator (a no-op when it is fresh). */
function buildLoadgen() {
  const r = spawnSync('cargo', ['build', '--release', '--quiet', '-p', 'netmessages-loadgen'], {
    cwd: path.join(here, '..'),
    stdio: 'inherit',
  });
  if (r.status !== 0) throw new Error('cannot build netmessages-loadgen (cargo build --release -p netmessages-loadgen)');
}

async function manyPeers(impl, o) {
  if (useLoadgen) buildLoadgen();
  return withChildren(async (mk) => {
    const budget = T.manyWarmupMs + T.manyWindowMs + 60000;
    const server = mk('many-server', { impl, timeoutMs: budget }, ['--expose-gc']);
    const sv = await server.wait('ready');
    const procs = useLoadgen ? 1 : T.manyProcs;
    const clients = [];
    for (let i = 0; i < procs; i++) {
      const count = Math.floor(T.peers / procs) + (i < T.peers % procs ? 1 : 0);
      const lg = useLoadgen ? loadgenBin : undefined;
      clients.push(mk('many-client', { impl, count, rate: o.rate, size: o.size, timeoutMs: budget, loadgen: lg }));
    }
    await Promise.all(clients.map((c) => c.wait('ready', 45000)));
    for (const c of clients) c.send({ type: 'peer', port: sv.port });
    await Promise.all(clients.map((c) => c.wait('peered')));
    // Idle phase first (RSS does not shrink after a busy phase): one message per peer,
    // then nothing for longer than a keepalive interval (timeoutConnected / 3), so each
    // session is established and idle when the server is measured.
    for (const c of clients) c.send({ type: 'hello' });
    await Promise.all(clients.map((c) => c.wait('helloed', 60000)));
    await sleep(1000);
    server.send({ type: 'idle-start' });
    await server.wait('idle-start');
    await sleep(T.manyIdleMs);
    server.send({ type: 'idle-mark' });
    const idle = await server.wait('idle-mark', 8000);
    for (const c of clients) c.send({ type: 'go' });
    await sleep(T.manyWarmupMs);
    server.send({ type: 'mark' });
    const m0 = await server.wait('mark');
    await sleep(T.manyWindowMs);
    server.send({ type: 'mark' });
    const m = await server.wait('mark', 8000);
    for (const c of clients) c.send({ type: 'stop' });
    const cres = await Promise.all(clients.map((c) => c.wait('result', useLoadgen ? 30000 : 10000)));
    server.send({ type: 'report' });
    await server.wait('result', 5000).catch(() => {});
    const sent = cres.reduce((a, r) => a + r.sent, 0);
    const backpressure = cres.reduce((a, r) => a + r.backpressure, 0);
    // What the client processes actually managed to send (they may not keep up on a small machine).
    const clientSendRate = cres.reduce((a, r) => a + (r.sent * 1000) / r.sendingMs, 0);
    return {
      peers: T.peers,
      clientProcesses: procs,
      loadGenerator: useLoadgen ? 'netmessages-loadgen (Rust)' : 'Node endpoints',
      ratePerPeer: o.rate,
      msgSize: o.size,
      idleSessions: idle.sessions,
      idleCpuPercent: idle.cpuPercent,
      idleRssPerSessionKB: idle.rssPerSessionBytes / 1024,
      sessionsAtWindowStart: m0.sessions,
      sessions: m.sessions,
      serverCpuPercent: m.cpuPercent,
      // The generators may not reach the same rate (the Rust load generator's encrypted
      // sessions cost it far more per message than raw datagrams), so CPU is also given
      // per message received: the ratio that compares unequal rates fairly.
      serverCpuPerKMsgs: m.msgsPerSec > 0 ? m.cpuPercent / (m.msgsPerSec / 1000) : undefined,
      msgsPerSec: m.msgsPerSec,
      expectedMsgsPerSec: T.peers * o.rate,
      clientSendRatePerSec: clientSendRate,
      rssBeforeMB: m.rssBefore / 1e6,
      rssAfterMB: m.rssAfter / 1e6,
      rssPerSessionKB: m.rssPerSessionBytes / 1024,
      sent,
      backpressureWaits: backpressure,
    };
  });
}

/**
 * Loss recovery against GNS (bench/gns-loss.mjs, run once for both columns): completion times
 * of the echo and bulk workloads under fake loss, netmessages to netmessages and GNS to GNS.
 * Without a GNS peer (no source, or the interop suite missing) the row notes why and is empty.
 */
let gnsLoss;
function gnsLossRun(ctx) {
  gnsLoss ??= new Promise((resolve, reject) => {
    const runs = mode === 'full' ? 3 : 1;
    const quick = mode === 'full' ? [] : ['--quick'];
    const r = spawnSync(process.execPath, [path.join(here, 'gns-loss.mjs'), '--json', `--runs=${runs}`, ...quick], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 30 * 60_000,
    });
    const out = (r.stdout ?? '').trim();
    if (out.startsWith('gns-loss: skipped')) return resolve({ skipped: out });
    try {
      resolve(JSON.parse(out.split('\n').pop()));
    } catch {
      reject(new Error(`gns-loss.mjs exited ${r.status}: ${out.slice(-300) || r.error?.message}`));
    }
  });
  return gnsLoss.then((g) => {
    if (g.skipped) ctx.note(g.skipped);
    return g;
  });
}
// The interop throughput pairs (interop/throughput.mjs), one run of all four, shared by the
// row's subjects.
let gnsThroughput;
function gnsThroughputRun(ctx) {
  gnsThroughput ??= new Promise((resolve, reject) => {
    const window = mode === 'full' ? 10_000 : 3000;
    const r = spawnSync(process.execPath, [path.join(root, 'interop', 'throughput.mjs'), '--json', `--window=${window}`], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 20 * 60_000,
    });
    const out = (r.stdout ?? '').trim();
    if (out.startsWith('throughput: skipped')) return resolve({ skipped: out });
    try {
      resolve(JSON.parse(out.split('\n').pop()));
    } catch {
      reject(new Error(`interop/throughput.mjs exited ${r.status}: ${out.slice(-300) || r.error?.message}`));
    }
  });
  return gnsThroughput.then((g) => {
    if (g.skipped) ctx.note(g.skipped);
    return g;
  });
}
const GNS_THROUGHPUT_PAIRS = [
  ['gnsToGns', 'gns-gns', 'GNS -> GNS'],
  ['gnsToNm', 'gns-nm', 'GNS -> netmessages'],
  ['nmToGns', 'nm-gns', 'netmessages -> GNS'],
  ['nmToNm', 'nm-nm', 'netmessages -> netmessages'],
];

const GNS_LOSS_ROWS = [
  ['echo10Ms', 'echo 10 % loss'],
  ['echo30Ms', 'echo 30 % loss'],
  ['echo10FixedMs', 'echo 10 % loss, both 256 KiB/s'],
  ['echo30FixedMs', 'echo 30 % loss, both 256 KiB/s'],
  ['bulk5Ms', 'bulk 2 MB, 5 % loss, 20 ms lag'],
  ['bulk10Ms', 'bulk 2 MB, 10 % loss, 20 ms lag'],
  ['bulk30Ms', 'bulk 2 MB, 30 % loss, 20 ms lag'],
];

// ---------------------------------------------------------------- the scenarios
const Unreliable = 0;
const Reliable = 8;
const scenarios = [
  {
    id: 'unreliable-32B',
    title: 'Unreliable 32 B messages, one sender process to one receiver process',
    subject: 'netmessages',
    variants: ['netmessages-fast', 'netmessages-batch', 'netmessages-buffer', 'netsockets-fast'],
    baselines: ['dgram', 'udx'],
    metrics: [{ key: 'msgsPerSec', label: 'msgs/s received', unit: 'msg/s', better: 'higher' }],
    async run(impl) {
      return throughput(impl, { size: 32, flags: Unreliable, udxMode: 'message' });
    },
  },
  {
    id: 'reliable-1200B',
    title: 'Reliable 1200 B messages, throughput',
    subject: 'netmessages',
    variants: ['netmessages-fast', 'netmessages-batch', 'netsockets-fast'],
    baselines: ['tcp', 'udx'],
    metrics: [{ key: 'mbPerSec', label: 'MB/s received', unit: 'MB/s', better: 'higher' }],
    async run(impl) {
      return throughput(impl, { size: 1200, flags: Reliable, udxMode: 'stream', checkSeq: true });
    },
  },
  {
    id: 'reliable-64KiB',
    title: 'Reliable 64 KiB messages, throughput',
    subject: 'netmessages',
    variants: ['netmessages-fast'],
    baselines: ['tcp', 'udx'],
    metrics: [{ key: 'mbPerSec', label: 'MB/s received', unit: 'MB/s', better: 'higher' }],
    async run(impl, ctx) {
      if (impl.startsWith('netmessages')) {
        let r = await throughput(impl, { size: ctx.size ?? 65536, flags: Reliable, udxMode: 'stream', checkSeq: true });
        if (ctx.size === undefined && (r.sent === 0 || r.received === 0)) {
          const first = r;
          r = await throughput(impl, { size: 60000, flags: Reliable, udxMode: 'stream', checkSeq: true });
          r.sizeNote =
            `65536 B failed (sent ${first.sent}, received ${first.received}, ` +
            `backpressure waits ${first.backpressureWaits}, other results ${JSON.stringify(first.otherSendResults)}); ` +
            `measured with 60000 B messages; baselines use the same size`;
          ctx.note(r.sizeNote);
        }
        ctx.size = r.msgSize;
        return r;
      }
      return throughput(impl, { size: ctx.size ?? 65536, flags: Reliable, udxMode: 'stream' });
    },
  },
  {
    id: 'pingpong-32B',
    title: 'Ping-pong 32 B (ReliableNoNagle), one round trip outstanding',
    subject: 'netmessages',
    variants: ['netsockets'],
    baselines: ['dgram', 'tcp'],
    metrics: [
      { key: 'p50Us', label: 'RTT p50', unit: 'µs', better: 'lower' },
      { key: 'p99Us', label: 'RTT p99', unit: 'µs', better: 'lower' },
      { key: 'p999Us', label: 'RTT p99.9', unit: 'µs', better: 'lower' },
    ],
    async run(impl) {
      return pingPong(impl, { size: 32 });
    },
  },
  {
    id: 'gns-loss',
    title: 'Loss recovery: time to finish, netmessages to netmessages vs GNS to GNS (fake loss on both)',
    subject: 'netmessages',
    baselines: ['gns'],
    metrics: GNS_LOSS_ROWS.map(([key, label]) => ({ key, label, unit: 'ms', better: 'lower' })),
    async run(impl, ctx) {
      const g = await gnsLossRun(ctx);
      if (g.skipped) return {};
      const out = {};
      for (const [key, label] of GNS_LOSS_ROWS) {
        const row = g.rows.find((r) => r.name === label);
        if (row) out[key] = impl === 'gns' ? row.gnsMs : row.nmMs;
      }
      return out;
    },
  },
  {
    id: 'gns-throughput',
    title: 'Reliable 1200 B to and from a stock GNS peer, both sides fixed at 100 MB/s (interop/throughput.mjs)',
    subject: 'netmessages',
    baselines: ['gns'],
    metrics: GNS_THROUGHPUT_PAIRS.map(([key, , label]) => ({ key, label: `${label} MB/s`, unit: 'MB/s', better: 'higher' })),
    async run(impl, ctx) {
      const g = await gnsThroughputRun(ctx);
      if (g.skipped) return {};
      // Every pair is one figure of the run; the subject row and the baseline row show the
      // same four, so each ratio reads against GNS -> GNS.
      const gg = g.results.find((r) => r.id === 'gns-gns')?.mbps;
      const out = {};
      for (const [key, id] of GNS_THROUGHPUT_PAIRS) {
        const r = g.results.find((x) => x.id === id);
        if (r?.mbps !== undefined) out[key] = impl === 'gns' ? gg : r.mbps;
      }
      return out;
    },
  },
  {
    id: 'many-peers',
    title: `Many peers: ${T.peers} sessions on one server endpoint, 20 msgs/s each (32 B unreliable)`,
    subject: 'netmessages',
    baselines: ['dgram'],
    metrics: [
      { key: 'serverCpuPercent', label: 'server CPU', unit: '% of a core', better: 'lower' },
      { key: 'serverCpuPerKMsgs', label: 'server CPU per 1,000 msg/s received', unit: '% of a core', better: 'lower' },
      { key: 'rssPerSessionKB', label: 'server RSS growth per session', unit: 'KiB', better: 'lower' },
      { key: 'idleRssPerSessionKB', label: 'server RSS growth per idle session', unit: 'KiB', better: 'lower' },
      { key: 'idleCpuPercent', label: 'server CPU, sessions idle', unit: '% of a core', better: 'lower' },
      { key: 'msgsPerSec', label: 'msgs/s received', unit: 'msg/s', better: 'higher' },
    ],
    async run(impl) {
      return manyPeers(impl, { rate: 20, size: 32 });
    },
  },
];

// ---------------------------------------------------------------- main
/** Modification times of the built library, to notice a rebuild during the run. */
function buildStamp() {
  const files = ['dist/index.mjs', 'dist/networking-messages.js'];
  try {
    for (const f of readdirSync(path.join(root, 'native'))) if (f.endsWith('.node')) files.push(`native/${f}`);
  } catch {}
  const out = {};
  for (const f of files) {
    try {
      out[f] = statSync(path.join(root, f)).mtime.toISOString();
    } catch {
      out[f] = null;
    }
  }
  return out;
}

function git(...a) {
  try {
    return execFileSync('git', a, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

async function main() {
  const started = new Date();
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
  let udxVersion = null;
  try {
    udxVersion = JSON.parse(readFileSync(path.join(root, 'node_modules/udx-native/package.json'), 'utf8')).version;
  } catch {}
  const results = {
    schema: 1,
    mode,
    startedAt: started.toISOString(),
    settings: { ...T, nmConfig: nmConfig ?? null },
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? null,
      totalMemMB: Math.round(os.totalmem() / 1e6),
      loadAvgAtStart: os.loadavg(),
      platform: `${os.platform()} ${os.release()}`,
      node: process.versions.node,
    },
    library: {
      version: pkg.version,
      commit: git('rev-parse', '--short', 'HEAD'),
      dirty: (git('status', '--porcelain') ?? '') !== '',
    },
    baselines: { udxNative: udxVersion },
    buildAtStart: buildStamp(),
    scenarios: [],
    errors: [],
  };
  for (const sc of scenarios) {
    if (only && !only.includes(sc.id)) continue;
    const entry = { id: sc.id, title: sc.title, subject: sc.subject, variants: [], baselines: [], metrics: sc.metrics, runs: {}, notes: [] };
    const ctx = { note: (n) => entry.notes.push(n) };
    const variants = [...(sc.variants ?? [])];
    if (driverReceive && sc.subject === 'netmessages')
      variants.push(...[sc.subject, ...(sc.variants ?? [])].map((v) => v + DRIVER_RECEIVE));
    for (const impl of [sc.subject, ...variants, ...sc.baselines]) {
      if (smokeImpls && !smokeImpls.has(impl)) continue;
      if (variants.includes(impl)) entry.variants.push(impl);
      else if (impl !== sc.subject) entry.baselines.push(impl);
      log(`${sc.id} / ${impl} ...`);
      const t0 = Date.now();
      try {
        entry.runs[impl] = await sc.run(impl, ctx);
        log(`${sc.id} / ${impl}: ${sc.metrics.map((m) => `${m.key}=${entry.runs[impl][m.key]?.toFixed?.(1)}`).join(' ')} (${Date.now() - t0} ms)`);
      } catch (e) {
        killAll();
        entry.runs[impl] = { error: String(e.message ?? e) };
        results.errors.push(`${sc.id}/${impl}: ${e.message ?? e}`);
        log(`${sc.id} / ${impl} FAILED: ${e.message ?? e}`);
      }
    }
    results.scenarios.push(entry);
  }
  results.durationMs = Date.now() - started.getTime();
  results.machine.loadAvgAtEnd = os.loadavg();
  results.buildAtEnd = buildStamp();
  results.buildChangedDuringRun = JSON.stringify(results.buildAtStart) !== JSON.stringify(results.buildAtEnd);

  const rows = tableRows(results);
  results.table = rows;
  mkdirSync(outDir, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const jsonPath = path.join(outDir, `${stamp}.json`);
  writeFileSync(jsonPath, JSON.stringify(results, null, 2) + '\n');
  const svgPath = path.join(outDir, 'latest.svg');
  writeFileSync(svgPath, svgChart(results));

  console.log(`\nnetmessages benchmarks, ${mode} mode, ${results.startedAt}, ${results.machine.cpus} CPUs, node ${results.machine.node}\n`);
  console.log(textTable(rows));
  console.log('\nDetails (loss = sent vs received over the whole run; backpressure = LimitExceeded / drain waits):');
  for (const sc of results.scenarios) {
    for (const [impl, r] of Object.entries(sc.runs)) {
      if (r.error) {
        console.log(`  ${sc.id} / ${impl}: ERROR ${r.error}`);
        continue;
      }
      const bits = [];
      if (r.sent !== undefined) bits.push(`sent ${r.sent}`);
      if (r.received !== undefined) bits.push(`received ${r.received}`);
      if (r.lossPercent !== undefined && r.lossPercent !== null) bits.push(`loss ${r.lossPercent.toFixed(2)}%`);
      if (typeof r.undeliveredPercent === 'number') bits.push(`not delivered by the end ${r.undeliveredPercent.toFixed(2)}%`);
      if (r.backpressureWaits !== undefined) bits.push(`backpressure ${r.backpressureWaits}`);
      if (r.otherSendResults && Object.keys(r.otherSendResults).length) bits.push(`other send results ${JSON.stringify(r.otherSendResults)}`);
      if (r.seqGaps !== undefined) bits.push(`seq gaps ${r.seqGaps}, reorders ${r.seqReorders}`);
      if (r.receiverCpuPercent !== undefined) bits.push(`receiver CPU ${r.receiverCpuPercent.toFixed(0)}%`);
      if (r.lost !== undefined) bits.push(`round trips ${r.roundTrips}, timed out ${r.lost}, mean ${r.meanUs.toFixed(0)} µs, max ${r.maxUs.toFixed(0)} µs`);
      if (r.sessions !== undefined) {
        bits.push(`idle phase: ${r.idleSessions} sessions, CPU ${r.idleCpuPercent.toFixed(1)} %, ${r.idleRssPerSessionKB.toFixed(2)} KiB RSS per session`);
        bits.push(`sessions ${r.sessions}/${r.peers}, target ${r.expectedMsgsPerSec} msg/s, clients sent ${r.clientSendRatePerSec.toFixed(0)} msg/s, RSS ${r.rssBeforeMB.toFixed(1)} -> ${r.rssAfterMB.toFixed(1)} MB`);
      }
      if (r.msgSize !== undefined) bits.push(`${r.msgSize} B msgs`);
      const ss = r.sessionStatusAtStop;
      if (ss && !ss.error) {
        const keep = ['ping', 'sendRateBytesPerSecond', 'pendingReliable', 'sentUnackedReliable'].filter((k) => typeof ss[k] === 'number' && ss[k] !== -1);
        if (keep.length) bits.push(`session status at stop: ${keep.map((k) => `${k} ${ss[k]}`).join(', ')}`);
      }
      console.log(`  ${sc.id} / ${impl}: ${bits.join(', ')}`);
    }
    for (const n of sc.notes) console.log(`  ${sc.id} NOTE: ${n}`);
  }
  if (results.buildChangedDuringRun)
    console.log('\nWARNING: dist/ or native/ was rebuilt during this run; runs may mix builds (see buildAtStart/buildAtEnd).');
  if (results.errors.length)
    console.log(`\n${results.errors.length} run(s) failed (full text in the JSON):\n  ${results.errors.map((e) => e.split('\n')[0]).join('\n  ')}`);
  console.log(`\nJSON: ${path.relative(process.cwd(), jsonPath)}\nSVG:  ${path.relative(process.cwd(), svgPath)}  (${(results.durationMs / 1000).toFixed(1)} s)`);
  if (flag('markdown')) console.log(`\n${markdownTable(rows)}`);
  process.exitCode = results.errors.length ? 1 : 0;
}

main().catch((e) => {
  console.error(e);
  killAll();
  process.exit(1);
});
