#!/usr/bin/env node
// Reliable throughput between a stock GameNetworkingSockets peer and netmessages, in the same
// run: GNS->GNS, GNS->netmessages, netmessages->GNS, netmessages->netmessages. 1200 B reliable
// messages (plus the messages layer's 5-byte header on the wire), both sides' send rate fixed
// at 100 MB/s (GNS's SendRateMin = SendRateMax; our sendRateMin = sendRateMax), everything
// else at its default. Each side is its own process; traffic stays on 127.0.0.1.
//
//   node interop/throughput.mjs [--window=MS] [--warmup=MS] [--json] [--only=gns-gns,nm-gns,...]
//                               [--loss=PCT] [--rate=BYTES_PER_S]
//
// --loss makes both sides drop that share of what they send (GNS's FakePacketLoss_Send, our
// fakePacketLossSend); --rate changes the fixed send rate (default 100 MB/s).
// The figure is what the receiver got during the window, in MB/s (10^6 B/s of message body).
// GNS's log of each GNS side goes to .cache/interop-logs/throughput-*.log. Without a GNS
// source it says so and exits 0.
import { fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ensureGnsPeer, gnsSource } from './build-gns.mjs';
import { GnsPeer } from './gns-peer.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (n, d) => args.find((a) => a.startsWith(`--${n}=`))?.slice(n.length + 3) ?? d;
const WINDOW_MS = Number(opt('window', 3000));
const WARMUP_MS = Number(opt('warmup', 1000));
const JSON_OUT = args.includes('--json');
const ONLY = opt('only')?.split(',');
const RATE = Number(opt('rate', 100_000_000));
const LOSS = Number(opt('loss', 0));
const SIZE = 1200;
const GNS_CONFIG = { SendRateMin: RATE, SendRateMax: RATE };
const NM_CONFIG = { sendRateMin: RATE, sendRateMax: RATE, fakePacketLossSend: LOSS };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[throughput]', ...a);

const src = gnsSource();
if (src.kind === 'none') {
  console.log(`throughput: skipped: ${src.reason}`);
  process.exit(0);
}
if (src.kind === 'bad') {
  console.error(`throughput: ${src.reason}`);
  process.exit(1);
}
const { peer: binary } = await ensureGnsPeer({ log: (m) => log(m) });

/** A netmessages process (throughput-child.mjs). */
async function nmProcess() {
  const child = fork(path.join(here, 'throughput-child.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox = [];
  const waiters = [];
  child.on('message', (m) => {
    const i = waiters.findIndex((w) => w.ev === m.ev || m.ev === 'error');
    if (i >= 0) waiters.splice(i, 1)[0].resolve(m);
    else inbox.push(m);
  });
  const wait = (ev, ms = 10_000) => {
    const k = inbox.findIndex((m) => m.ev === ev);
    if (k >= 0) return Promise.resolve(inbox.splice(k, 1)[0]);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`netmessages child: no ${ev}`)), ms);
      waiters.push({ ev, resolve: (m) => (clearTimeout(t), m.ev === 'error' ? reject(new Error(m.error)) : resolve(m)) });
    });
  };
  await wait('hello');
  return {
    async request(cmd, ev) {
      child.send(cmd);
      return wait(ev);
    },
    async end() {
      child.send({ cmd: 'exit' });
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(2000)]);
      child.kill('SIGKILL');
    },
  };
}

const LOG_DIR = path.resolve(here, '..', '.cache', 'interop-logs');

/** A GNS peer that only counts what it receives; its events go to .cache/interop-logs/. */
async function gnsProcess(tag) {
  return GnsPeer.start(binary, { recvEvents: false, logLevel: 4, global: { FakePacketLoss_Send: LOSS } }, { name: 'gns', logFile: path.join(LOG_DIR, `throughput-${tag}.log`) });
}

/** Bytes received so far by a receiver. */
async function received(r) {
  if (r.kind === 'gns') {
    const c = await r.peer.counters();
    return c.counters.reduce((s, x) => s + x.bytes, 0);
  }
  return (await r.proc.request({ cmd: 'count' }, 'count')).bytes;
}

async function measure(name, senderKind, receiverKind) {
  const cleanup = [];
  try {
    let receiver;
    let target;
    if (receiverKind === 'gns') {
      const peer = await gnsProcess(`${name.replace(/[^a-z]+/gi, '-')}-receiver`);
      cleanup.push(() => peer.quit());
      const port = await peer.listen(GNS_CONFIG);
      receiver = { kind: 'gns', peer };
      target = port;
    } else {
      const proc = await nmProcess();
      cleanup.push(() => proc.end());
      const { port } = await proc.request({ cmd: 'recv', config: NM_CONFIG }, 'ready');
      receiver = { kind: 'nm', proc };
      target = port;
    }
    let senderStatus;
    if (senderKind === 'gns') {
      const peer = await gnsProcess(`${name.replace(/[^a-z]+/gi, '-')}-sender`);
      cleanup.push(() => peer.quit());
      const conn = await peer.connect(`127.0.0.1:${target}`, GNS_CONFIG);
      await peer.waitConnected(conn);
      peer.send({ cmd: 'stream', conn, bytes: 1e13, size: SIZE, flags: 8, channel: 0 });
      senderStatus = async () => {
        const s = await peer.status(conn);
        return { sendRate: s.sendRate, pendingReliable: s.pendingReliable, sentUnackedReliable: s.sentUnackedReliable, ping: s.ping };
      };
    } else {
      const proc = await nmProcess();
      cleanup.push(() => proc.end());
      const peerId = `ip:127.0.0.1:${target}`;
      await proc.request({ cmd: 'send', target: peerId, size: SIZE, config: NM_CONFIG }, 'sending');
      senderStatus = async () => {
        const s = (await proc.request({ cmd: 'status', peer: peerId }, 'status')).status;
        return { sendRate: s?.sendRateBytesPerSecond, pendingReliable: s?.pendingReliable, sentUnackedReliable: s?.sentUnackedReliable, ping: s?.ping };
      };
    }
    const t0 = Date.now();
    while ((await received(receiver)) === 0) {
      if (Date.now() - t0 > 10_000) throw new Error('nothing arrived within 10 s');
      await sleep(20);
    }
    await sleep(WARMUP_MS);
    const a = await received(receiver);
    const ta = process.hrtime.bigint();
    await sleep(WINDOW_MS);
    const b = await received(receiver);
    const tb = process.hrtime.bigint();
    const seconds = Number(tb - ta) / 1e9;
    const status = await senderStatus();
    let bufferedWarnings;
    if (receiverKind === 'gns') bufferedWarnings = receiver.peer.grepLog(/reliable data buffered/).length;
    return { name, mbps: (b - a) / seconds / 1e6, bytes: b - a, seconds, sender: status, bufferedWarnings };
  } finally {
    for (const f of cleanup.reverse()) await f();
  }
}

const PAIRS = [
  ['gns-gns', 'GNS -> GNS', 'gns', 'gns'],
  ['gns-nm', 'GNS -> netmessages', 'gns', 'nm'],
  ['nm-gns', 'netmessages -> GNS', 'nm', 'gns'],
  ['nm-nm', 'netmessages -> netmessages', 'nm', 'nm'],
];
const results = [];
for (const [id, name, s, r] of PAIRS) {
  if (ONLY && !ONLY.includes(id)) continue;
  log(`${name}: ${WARMUP_MS} ms warm-up, ${WINDOW_MS} ms window`);
  try {
    results.push({ id, ...(await measure(name, s, r)) });
  } catch (e) {
    results.push({ id, name, error: e.message });
  }
}
const byId = Object.fromEntries(results.map((r) => [r.id, r]));
const ratio = byId['nm-gns']?.mbps !== undefined && byId['gns-gns']?.mbps ? byId['nm-gns'].mbps / byId['gns-gns'].mbps : undefined;
if (JSON_OUT) {
  console.log(JSON.stringify({ sizeBytes: SIZE, rateCap: RATE, lossPct: LOSS, windowMs: WINDOW_MS, results, ratioNmToGnsVsGnsToGns: ratio }));
} else {
  const lossText = LOSS > 0 ? `, ${LOSS} % loss on each side's sends` : '';
  console.log(`reliable ${SIZE} B messages, send rate fixed at ${RATE / 1e6} MB/s on both sides${lossText}, ${WINDOW_MS} ms window`);
  for (const r of results) {
    if (r.error) console.log(`  ${r.name.padEnd(28)} error: ${r.error}`);
    else {
      const extra = r.bufferedWarnings ? `, GNS "reliable data buffered" warnings: ${r.bufferedWarnings}` : '';
      console.log(`  ${r.name.padEnd(28)} ${r.mbps.toFixed(1).padStart(6)} MB/s  (sender: sendRate ${r.sender.sendRate}, unacked ${r.sender.sentUnackedReliable} B, ping ${r.sender.ping} ms${extra})`);
    }
  }
  if (ratio !== undefined) console.log(`  netmessages -> GNS / GNS -> GNS = ${ratio.toFixed(2)} (target >= 0.9)`);
}
process.exit(results.some((r) => r.error) ? 1 : 0);
