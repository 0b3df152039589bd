#!/usr/bin/env node
// Loss recovery against the reference: the same workloads between two stock
// GameNetworkingSockets (GNS) peers and between two netmessages endpoints, in the same run,
// each side degrading what it sends with its own fake-network knobs (GNS's
// FakePacketLoss_Send / FakePacketLag_Send, our fakePacketLossSend / fakePacketLagSend).
// Every endpoint is a process of its own; traffic stays on 127.0.0.1.
//
//   node bench/gns-loss.mjs [--runs=N] [--only=echo,echo256,bulk] [--loss=10,30] [--quick] [--json]
//
// --quick runs three of the rows below (echo 10 %, echo 30 % at 256 KiB/s, bulk 10 %): the
// quick bench suite's share of its 2 minutes.
// --only=echo256 runs only the echo rows at the fixed 256 KiB/s; --loss picks the echo rows'
// loss rates. GNS_LOSS_TRACE=1 makes each netmessages process print when the echo's
// messages arrived and its session's loss, resend and probe counts.
//
// Rows (the median of --runs runs, 3 by default):
//   echo, 10 % and 30 % loss, no added lag: the client sends 100 reliable messages on each
//     of two channels (40-1,000 B), one 100 KB reliable message among them and 100 unreliable
//     ones (200 B), all at once; the server echoes every message; the time until every
//     reliable echo is back. Both stacks at their defaults, then both at GNS's default send
//     rate (fixed at 256 KiB/s), the rows named "both 256 KiB/s".
//   bulk, 5 / 10 / 30 % loss, 20 ms lag each way: 2 MB of 1200 B reliable messages, the send
//     rate fixed at 16 MB/s on both stacks (sendRateMin = sendRateMax), a 4 MB send buffer;
//     the time until the receiver has them all.
// Each run first connects and exchanges one message (with the knobs already on), so the
// time measured is the transfer's, not the handshake's.
//
// The GNS peer is the interop suite's (interop/gns-peer.mjs drives interop/gns-peer, built
// by interop/build-gns.mjs from ../shared/vendor/). GNS_PEER=/path/to/gns-peer uses a built
// binary as it is; NETMESSAGES_INTEROP_DIR=/path/to/interop takes the driver from another
// checkout. Without a GNS peer or its source it says why and exits 0.
import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const args = process.argv.slice(2);
const opt = (n, d) => args.find((a) => a.startsWith(`--${n}=`))?.slice(n.length + 3) ?? d;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[gns-loss]', ...a);

const ECHO = { reliablePerChannel: 100, bigIndex: 50, bigSize: 100_000, unreliable: 100, unreliableSize: 200 };
// The echo runs twice: both stacks at their defaults (GNS fixes its send rate at 256 KiB/s;
// ours starts there and grows up to sendRateMax), and both at GNS's 256 KiB/s, so that
// those rows compare loss recovery alone, not send rates.
const ECHO_RATE = { sendRateMin: 262_144, sendRateMax: 262_144 };
const BULK = { bytes: 2_000_000, size: 1200, rate: 16_000_000, sendBuffer: 4 << 20, lag: 20 };

/** Size of reliable echo message `i` on `channel` (the sim matrix's echo workload). */
const echoSize = (channel, i) => (channel === 0 && i === ECHO.bigIndex ? ECHO.bigSize : 40 + ((i * 97 + channel * 13) % 960));

// ------------------------------------------------------------------ the netmessages child

if (args[0] === '--child') {
  const { EResult, NetworkingMessages, SendFlags } = await import(pathToFileURL(path.join(root, 'dist', 'index.mjs')).href);
  let nm;
  let peer;
  const reply = (m) => process.send(m);
  // GNS_LOSS_TRACE=1: each netmessages process prints when the echo's messages arrived and
  // its session's detailed status (loss, resends, probe timeouts) when it exits.
  const trace = process.env.GNS_LOSS_TRACE === '1';
  const clock = () => performance.timeOrigin + performance.now();
  const arrivals = [];
  const body = (seq, size) => {
    const b = Buffer.alloc(size, seq & 0xff);
    if (size >= 4) b.writeUInt32LE(seq >>> 0, 0);
    return b;
  };
  process.on('message', async (c) => {
    try {
      if (c.cmd === 'listen') {
        nm = await NetworkingMessages.create({ bind: '127.0.0.1:0', config: c.config });
        nm.on('sessionRequest', (e) => nm.acceptSessionWithUser(e.identityRemote));
        let received = 0;
        let hellos = 0;
        nm.on('messages', (ch) => {
          for (;;) {
            const batch = nm.receiveMessagesOnChannel(ch, 256);
            for (const m of batch) {
              peer = m.identityPeer;
              if (trace && ch < 2 && (m.sendFlags & SendFlags.Reliable) !== 0) arrivals.push([clock(), ch, m.data.readUInt32LE(0), m.data.length]);
              if (c.echo) nm.sendMessageToUser(m.identityPeer, m.data, m.sendFlags & SendFlags.Reliable, ch);
              if (ch === 0) received++;
              if (ch === 3) hellos++;
              m.release();
            }
            if (batch.length < 256) break;
          }
        });
        process.on('message', (q) => q.cmd === 'count' && reply({ ev: 'count', received, hellos }));
        reply({ ev: 'listening', port: nm.localAddress.port });
      } else if (c.cmd === 'connect') {
        nm = await NetworkingMessages.create({ bind: '127.0.0.1:0', config: c.config });
        // One message there (and back, from an echo server) before the clock starts.
        peer = c.target;
        nm.sendMessageToUser(c.target, Buffer.from('hello'), SendFlags.Reliable, 3);
        reply({ ev: 'connecting' });
      } else if (c.cmd === 'echo') {
        const got = new Set();
        const want = 2 * ECHO.reliablePerChannel;
        let done;
        const finished = new Promise((r) => (done = r));
        let t0;
        nm.on('messages', (ch) => {
          for (;;) {
            const batch = nm.receiveMessagesOnChannel(ch, 256);
            for (const m of batch) {
              if ((m.sendFlags & SendFlags.Reliable) !== 0 && ch < 2) {
                got.add(`${ch}:${m.data.readUInt32LE(0)}`);
                if (trace) arrivals.push([clock(), ch, m.data.readUInt32LE(0), m.data.length]);
              }
              m.release();
            }
            if (batch.length < 256) break;
          }
          if (t0 !== undefined && got.size >= want) done(performance.now() - t0);
        });
        t0 = performance.now();
        if (trace) process.stderr.write(`[trace client] t0 ${clock().toFixed(1)}\n`);
        for (let i = 0; i < ECHO.reliablePerChannel; i++) {
          for (const ch of [0, 1]) {
            const r = nm.sendMessageToUser(c.target, body(i, echoSize(ch, i)), SendFlags.Reliable, ch);
            if (r !== EResult.OK) throw new Error(`reliable send returned ${r}`);
          }
          nm.sendMessageToUser(c.target, body(i, ECHO.unreliableSize), 0, 2);
        }
        const ms = await Promise.race([finished, sleep(120_000).then(() => NaN)]);
        reply({ ev: 'echoed', ms, got: got.size });
      } else if (c.cmd === 'waitHello') {
        // An echo server sends the hello back on channel 3; a counting one does not.
        const deadline = Date.now() + 30_000;
        while (nm.receiveMessagesOnChannel(3, 1).length === 0 && Date.now() < deadline) await sleep(5);
        reply({ ev: 'hello' });
      } else if (c.cmd === 'bulk') {
        const n = Math.ceil(BULK.bytes / BULK.size);
        let seq = 0;
        const pump = () => {
          while (seq < n) {
            const r = nm.sendMessageToUser(c.target, body(seq, BULK.size), SendFlags.Reliable, 0);
            if (r === EResult.LimitExceeded) return void setTimeout(pump, 1);
            if (r !== EResult.OK) return void reply({ ev: 'error', error: `send returned ${r}` });
            seq++;
          }
        };
        pump();
        reply({ ev: 'sending', n });
      } else if (c.cmd === 'exit') {
        if (trace && nm) {
          const who = c.role ?? 'process';
          const big = arrivals.filter((a) => a[3] >= ECHO.bigSize);
          const last = arrivals.slice(-6).map((a) => `${a[1]}:${a[2]}@${a[0].toFixed(1)}`);
          process.stderr.write(`[trace ${who}] ${arrivals.length} reliable arrivals; big at ${big.map((a) => a[0].toFixed(1)).join(' ')}; last ${last.join(' ')}\n`);
          const status = peer === undefined ? null : nm.getDetailedConnectionStatus(peer);
          if (status) process.stderr.write(`[trace ${who}] ${status.split('\n').filter((l) => /Lost|Recovery|Sent|Recv|RTT|rate/i.test(l)).join(' | ')}\n`);
        }
        await nm?.close();
        process.exit(0);
      }
    } catch (e) {
      reply({ ev: 'error', error: String(e?.stack ?? e) });
    }
  });
  reply({ ev: 'ready' });
} else {
  await main();
}

/** A netmessages process: `request(cmd, ev)` sends a command and waits for its event. */
async function nmProcess() {
  const child = fork(fileURLToPath(import.meta.url), ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox = [];
  const waiters = [];
  child.on('message', (m) => {
    const i = waiters.findIndex((w) => w.ev === m.ev || m.ev === 'error');
    if (i >= 0) waiters.splice(i, 1)[0].resolve(m);
    else inbox.push(m);
  });
  const wait = (ev, ms = 130_000) => {
    const k = inbox.findIndex((m) => m.ev === ev || m.ev === 'error');
    if (k >= 0) {
      const m = inbox.splice(k, 1)[0];
      return m.ev === 'error' ? Promise.reject(new Error(m.error)) : Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`netmessages child: no ${ev}`)), ms);
      waiters.push({ ev, resolve: (m) => (clearTimeout(t), m.ev === 'error' ? reject(new Error(m.error)) : resolve(m)) });
    });
  };
  await wait('ready');
  return {
    request(cmd, ev, ms) {
      child.send(cmd);
      return wait(ev, ms);
    },
    async end(role) {
      child.send({ cmd: 'exit', role });
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(3000)]);
      child.kill('SIGKILL');
    },
  };
}

/** The GNS peer program and its driver, or why there are none. */
async function findGns() {
  const dir = process.env.NETMESSAGES_INTEROP_DIR ? path.resolve(process.env.NETMESSAGES_INTEROP_DIR) : path.join(root, 'interop');
  const driver = path.join(dir, 'gns-peer.mjs');
  if (!existsSync(driver)) return { reason: `no GNS peer driver at ${path.relative(root, driver) || driver} (the interop suite)` };
  const { GnsPeer } = await import(pathToFileURL(driver).href);
  if (process.env.GNS_PEER) {
    if (!existsSync(process.env.GNS_PEER)) return { reason: `GNS_PEER=${process.env.GNS_PEER} does not exist` };
    return { GnsPeer, binary: process.env.GNS_PEER };
  }
  const { ensureGnsPeer, gnsSource } = await import(pathToFileURL(path.join(dir, 'build-gns.mjs')).href);
  const src = gnsSource();
  if (src.kind !== 'tarball' && src.kind !== 'dir') return { reason: src.reason };
  const { peer } = await ensureGnsPeer({ log: (m) => log(m) });
  return { GnsPeer, binary: peer };
}

function median(v) {
  const s = v.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
}

async function main() {
  const runs = Number(opt('runs', 3));
  const only = opt('only')?.split(',');
  const json = args.includes('--json');
  const gns = await findGns();
  if (!gns.binary) {
    console.log(`gns-loss: skipped: ${gns.reason}`);
    process.exit(0);
  }
  if (!existsSync(path.join(root, 'dist', 'index.mjs'))) {
    console.log('gns-loss: skipped: dist/ is not built (npm run build)');
    process.exit(0);
  }
  const { GnsPeer, binary } = gns;
  const gnsProcess = (knobs, recvEvents = true) =>
    GnsPeer.start(binary, { recvEvents, logLevel: 4, global: { FakePacketLoss_Send: knobs.loss, FakePacketLag_Send: knobs.lag } }, { name: 'gns' });
  const nmKnobs = (knobs, extra = {}) => ({ fakePacketLossSend: knobs.loss, fakePacketLagSend: knobs.lag, ...extra });

  async function echoGns(knobs) {
    const server = await gnsProcess(knobs, false);
    const client = await gnsProcess(knobs);
    try {
      await server.request({ cmd: 'echo', on: true }, 'echo');
      const port = await server.listen({});
      const conn = await client.connect(`127.0.0.1:${port}`, {});
      await client.waitConnected(conn, 30_000);
      await client.sendMessages(conn, { size: 8, seq: 999_999, channel: 3 });
      await client.waitMessages(1, (m) => m.ch === 3, 30_000);
      const t0 = performance.now();
      for (let i = 0; i < ECHO.reliablePerChannel; i++) {
        for (const ch of [0, 1]) client.send({ cmd: 'send', conn, count: 1, size: echoSize(ch, i), flags: 8, channel: ch, seq: i });
        client.send({ cmd: 'send', conn, count: 1, size: ECHO.unreliableSize, flags: 0, channel: 2, seq: i });
      }
      const want = 2 * ECHO.reliablePerChannel;
      await client.waitMessages(want, (m) => m.reliable && m.ch < 2, 120_000);
      return performance.now() - t0;
    } finally {
      await client.quit();
      await server.quit();
    }
  }

  async function echoNm(knobs) {
    const server = await nmProcess();
    const client = await nmProcess();
    try {
      const config = nmKnobs(knobs, knobs.fixedRate ? ECHO_RATE : {});
      const { port } = await server.request({ cmd: 'listen', echo: true, config }, 'listening');
      const target = `ip:127.0.0.1:${port}`;
      await client.request({ cmd: 'connect', target, config }, 'connecting');
      await client.request({ cmd: 'waitHello' }, 'hello');
      const r = await client.request({ cmd: 'echo', target }, 'echoed');
      return r.ms;
    } finally {
      await client.end('client');
      await server.end('server');
    }
  }

  async function bulkGns(knobs) {
    const cfg = { SendRateMin: BULK.rate, SendRateMax: BULK.rate, SendBufferSize: BULK.sendBuffer };
    const receiver = await gnsProcess(knobs);
    const sender = await gnsProcess(knobs, false);
    try {
      const port = await receiver.listen(cfg);
      const conn = await sender.connect(`127.0.0.1:${port}`, cfg);
      await sender.waitConnected(conn, 30_000);
      await sender.sendMessages(conn, { size: 8, seq: 999_999, channel: 3 });
      await receiver.waitMessages(1, (m) => m.ch === 3, 30_000);
      const n = Math.ceil(BULK.bytes / BULK.size);
      const t0 = performance.now();
      const sent = await sender.sendMessages(conn, { count: n, size: BULK.size, flags: 8, channel: 0 });
      if (sent.ok !== n) throw new Error(`GNS refused ${n - sent.ok} of ${n} sends: ${JSON.stringify(sent.failures)}`);
      await receiver.waitMessages(n, (m) => m.ch === 0, 120_000);
      return performance.now() - t0;
    } finally {
      await sender.quit();
      await receiver.quit();
    }
  }

  async function bulkNm(knobs) {
    const config = nmKnobs(knobs, { sendRateMin: BULK.rate, sendRateMax: BULK.rate, sendBufferSize: BULK.sendBuffer });
    const receiver = await nmProcess();
    const sender = await nmProcess();
    try {
      const { port } = await receiver.request({ cmd: 'listen', echo: false, config }, 'listening');
      const target = `ip:127.0.0.1:${port}`;
      await sender.request({ cmd: 'connect', target, config }, 'connecting');
      // The session carries data (the hello arrived) before the clock starts.
      const deadline = performance.now() + 30_000;
      while ((await receiver.request({ cmd: 'count' }, 'count')).hellos === 0) {
        if (performance.now() > deadline) throw new Error('no session within 30 s');
        await sleep(5);
      }
      const t0 = performance.now();
      const { n } = await sender.request({ cmd: 'bulk', target }, 'sending');
      for (;;) {
        const { received } = await receiver.request({ cmd: 'count' }, 'count');
        if (received >= n) break;
        if (performance.now() - t0 > 120_000) throw new Error(`only ${received} of ${n} arrived`);
        await sleep(2);
      }
      return performance.now() - t0;
    } finally {
      await sender.end();
      await receiver.end();
    }
  }

  const rows = [];
  const plan = [];
  const losses = opt('loss')?.split(',').map(Number);
  // --quick (the quick bench suite): one row of each kind, to stay within its 2 minutes.
  const quick = args.includes('--quick');
  const inQuick = (name) => ['echo 10 % loss', 'echo 30 % loss, both 256 KiB/s', 'bulk 2 MB, 10 % loss, 20 ms lag'].includes(name);
  for (const fixedRate of [false, true])
    for (const loss of [10, 30])
      if ((!only || only.includes('echo') || (fixedRate && only.includes('echo256'))) && (!losses || losses.includes(loss)))
        plan.push({ name: `echo ${loss} % loss${fixedRate ? ', both 256 KiB/s' : ''}`, knobs: { loss, lag: 0, fixedRate }, gns: echoGns, nm: echoNm });
  if (!only || only.includes('bulk'))
    for (const loss of [5, 10, 30]) plan.push({ name: `bulk 2 MB, ${loss} % loss, 20 ms lag`, knobs: { loss, lag: BULK.lag }, gns: bulkGns, nm: bulkNm });
  for (const p of quick ? plan.filter((q) => inQuick(q.name)) : plan) {
    const gnsMs = [];
    const nmMs = [];
    for (let r = 0; r < runs; r++) {
      // Interleaved, so a burst of load on the machine costs both stacks alike.
      for (const [stack, out] of [
        [p.gns, gnsMs],
        [p.nm, nmMs],
      ]) {
        try {
          out.push(await stack(p.knobs));
        } catch (e) {
          log(`${p.name}: ${e.message}`);
          out.push(NaN);
        }
      }
    }
    const row = { name: p.name, gnsMs: median(gnsMs), nmMs: median(nmMs), runs, gnsAll: gnsMs, nmAll: nmMs };
    row.ratio = row.nmMs / row.gnsMs;
    rows.push(row);
    log(`${p.name}: GNS ${gnsMs.map((x) => x.toFixed(0)).join(' ')} ms, netmessages ${nmMs.map((x) => x.toFixed(0)).join(' ')} ms`);
  }
  if (json) {
    console.log(JSON.stringify({ runs, rows }));
  } else {
    console.log(`loss recovery against GNS (median of ${runs} runs; netmessages / GNS <= 1 is the target)`);
    for (const r of rows) {
      const verdict = r.ratio <= 1 ? 'ok' : 'MISSED';
      console.log(`  ${r.name.padEnd(32)} GNS ${r.gnsMs.toFixed(0).padStart(6)} ms   netmessages ${r.nmMs.toFixed(0).padStart(6)} ms   ${r.ratio.toFixed(2)}  ${verdict}`);
    }
  }
  process.exit(rows.some((r) => !Number.isFinite(r.ratio)) ? 1 : 0);
}
