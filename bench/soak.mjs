#!/usr/bin/env node
// Soak: one server endpoint and many client sessions churning over real loopback under packet
// loss, for minutes. Run with `npm run soak -- --seconds 600` (CI runs the 60 s form).
//
//   node bench/soak.mjs [--seconds 600] [--sessions 1000] [--procs 4] [--loss 5]
//                       [--interval 500] [--kill-every 120] [--json FILE] [--svg FILE] [--strict]
//
// Processes: the server (one NetworkingMessages endpoint; accepts every session, echoes each
// reliable message back, checks every session's reliable stream), and --procs client
// processes holding --sessions endpoints between them (one session each, from 127.0.0.10 on;
// a session needs its own endpoint, since an endpoint has one session per peer). Every
// session connects, sends a reliable message (64 B to 1.2 KB) and a small unreliable one
// every --interval ms, and after 10-40 s (5-20 s in runs under 5 minutes) either closes politely
// and reconnects on the same endpoint (70 %), or vanishes: its endpoint drops everything and
// closes without a word, and a new endpoint (new port, new identity) takes its place. Every
// --kill-every seconds a whole client process is SIGKILLed and restarted. The server loses
// --loss % of the datagrams it sends and of those it receives (fakePacketLoss*).
//
// Checked, and reported:
// - every reliable message arrives exactly once and in order, per session and incarnation,
//   at the server and (echoed) at the client;
// - no session is stuck: every session whose client went away is ended by the server within
//   timeoutConnected + 5 s, with a reason (a timeout, or the peer's close);
// - server RSS and open file descriptors, sampled every 10 s: least-squares slope after the
//   warm-up (the first fifth of the run, at least 20 s);
// - the server's event-loop delay (perf_hooks.monitorEventLoopDelay): p99 and max;
// - throughput (messages/s at the server) over time.
// Writes JSON (bench/results/soak-<date>.json) and an SVG of RSS and throughput over time
// (bench/results/soak.svg). The exit code is non-zero when delivery or stuck-session checks
// fail; with --strict also when lag p99 >= 10 ms, fds grow, or memory in use (RSS less
// V8's unused reserve) grows more than 1 MiB/min. Memory is judged only over 240 s or more
// after the warm-up and at least two process kills (it swings with each kill), so the 60 s
// form reports its slopes without judging them.
import { fork } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const role = process.argv[2];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nm = () => import(path.join(root, 'dist/index.mjs'));
const TIMEOUT_CONNECTED = 10_000;
const fds = () => readdirSync('/proc/self/fd').length;

// A reliable message: [u32 endpoint nonce][u32 incarnation][u32 seq][padding]; echoes are the
// same bytes. The nonce tells two client endpoints apart that had the same address (a port
// the kernel gave out again): the same identity, but another peer.
function message(nonce, inc, seq, size) {
  const b = Buffer.alloc(Math.max(12, size), seq & 0xff);
  b.writeUInt32LE(nonce, 0);
  b.writeUInt32LE(inc, 4);
  b.writeUInt32LE(seq, 8);
  return b;
}

// ------------------------------------------------------------------ server
async function server() {
  const [loss] = process.argv.slice(3).map(Number);
  const { NetworkingMessages, SendFlags, ConnectionState } = await nm();
  const ep = await NetworkingMessages.create({
    bind: '127.0.0.1:0',
    config: { fakePacketLossSend: loss, fakePacketLossRecv: loss, timeoutConnected: TIMEOUT_CONNECTED },
  });
  const lag = monitorEventLoopDelay({ resolution: 1 });
  lag.enable();
  const lagAll = monitorEventLoopDelay({ resolution: 1 });
  lagAll.enable();
  // Per peer (identity/nonce): the incarnation seen, the next sequence number expected, and
  // how its session ended; `current` maps an identity to its peer now.
  const peers = new Map();
  const current = new Map();
  const st = { reliable: 0, unreliable: 0, bytes: 0, violations: 0, violationSamples: [], ends: {}, sessionsSeen: 0, echoRefused: 0 };
  const open = new Set();
  const peerOf = (id, nonce) => {
    const key = `${id}/${nonce}`;
    const was = current.get(id);
    if (was !== undefined && was !== key) end(id, 'taken over by a new peer at its address');
    current.set(id, key);
    let p = peers.get(key);
    if (!p) {
      p = { inc: -1, next: 0, endedAt: null, reason: null };
      peers.set(key, p);
      st.sessionsSeen++;
    }
    return p;
  };
  // The session with identity `id` ended: its current peer's end.
  const end = (id, reason) => {
    const p = peers.get(current.get(id));
    if (!p || p.endedAt !== null) return;
    p.endedAt = Date.now();
    p.reason = reason;
    st.ends[reason] = (st.ends[reason] ?? 0) + 1;
    open.delete(id);
  };
  ep.on('sessionRequest', (e) => ep.acceptSessionWithUser(e.identityRemote));
  ep.on('sessionFailed', (e) => {
    const id = e.info.identityRemote.toString();
    end(id, `failed ${e.info.endReason}`);
    ep.closeSessionWithUser(id);
  });
  // 'messages' fires when a channel's queue goes from empty to non-empty: read it empty.
  const drain = () => {
    let batch;
    do {
      batch = ep.receiveMessagesOnChannel(0, 512);
      for (const m of batch) reliable(m);
    } while (batch.length === 512);
    do {
      batch = ep.receiveMessagesOnChannel(1, 512);
      for (const m of batch) {
        st.unreliable++;
        st.bytes += m.size;
      }
    } while (batch.length === 512);
  };
  const reliable = (m) => {
    const id = m.identityPeer.toString();
    const p = peerOf(id, m.data.readUInt32LE(0));
    const inc = m.data.readUInt32LE(4);
    const seq = m.data.readUInt32LE(8);
    if (inc !== p.inc) {
      if (inc < p.inc || seq !== 0) {
        st.violations++;
        if (st.violationSamples.length < 10) st.violationSamples.push({ id, inc, seq, had: p.inc, next: p.next });
      }
      p.inc = inc;
      p.next = 0;
    }
    if (seq !== p.next) {
      st.violations++;
      if (st.violationSamples.length < 10) st.violationSamples.push({ id, inc, seq, expected: p.next });
    }
    p.next = seq + 1;
    p.endedAt = null;
    open.add(id);
    st.reliable++;
    st.bytes += m.size;
    const r = ep.sendMessageToUser(m.identityPeer, m.data, SendFlags.Reliable, 0);
    if (r !== 1) st.echoRefused++;
  };
  ep.on('messages', drain);
  // Visit every open session about every 2 s: a politely closed one ends here.
  let cursor = [];
  setInterval(() => {
    if (cursor.length === 0) cursor = [...open];
    for (const id of cursor.splice(0, Math.max(50, Math.ceil(open.size / 10)))) {
      const s = ep.getSessionConnectionInfo(id).state;
      if (s === ConnectionState.ClosedByPeer) {
        end(id, 'closed by peer');
        ep.closeSessionWithUser(id);
      } else if (s === ConnectionState.None) end(id, 'gone');
    }
  }, 200);
  let last = { t: Date.now(), reliable: 0, unreliable: 0, bytes: 0 };
  setInterval(() => {
    const now = Date.now();
    const dt = (now - last.t) / 1000;
    // RSS split where Node can see it: V8's heap (used, and reserved), and buffers held
    // outside it; the rest is the native side's malloc heap (core, driver, addon) and code.
    const mem = process.memoryUsage();
    process.send({
      sample: {
        t: now,
        rss: mem.rss,
        heap: mem.heapUsed,
        heapTotal: mem.heapTotal,
        external: mem.external,
        fds: fds(),
        open: open.size,
        msgsPerSec: (st.reliable + st.unreliable - last.reliable - last.unreliable) / dt,
        bytesPerSec: (st.bytes - last.bytes) / dt,
        lagP99Ms: lag.percentile(99) / 1e6,
        lagMaxMs: lag.max / 1e6,
      },
    });
    last = { t: now, reliable: st.reliable, unreliable: st.unreliable, bytes: st.bytes };
    lag.reset();
  }, 10_000);
  process.on('message', async (m) => {
    if (m.warmedUp) lagAll.reset();
    if (m.report) {
      const openSessions = [...open].map((id) => ({ key: current.get(id), state: ep.getSessionConnectionInfo(id).state }));
      const ended = Object.fromEntries([...peers].filter(([, p]) => p.endedAt !== null).map(([key, p]) => [key, { at: p.endedAt, reason: p.reason }]));
      process.send({
        report: { ...st, openSessions, ended, lagP99Ms: lagAll.percentile(99) / 1e6, lagP999Ms: lagAll.percentile(99.9) / 1e6, lagMaxMs: lagAll.max / 1e6 },
      });
    }
    if (m.stop) {
      await ep.close();
      process.exit(0);
    }
  });
  process.send({ port: ep.localAddress.port });
}

// ------------------------------------------------------------------ clients
async function clients() {
  const [port, ip, count, lifeMin, lifeMax, interval] = process.argv.slice(3);
  const { NetworkingMessages, SendFlags, EResult } = await nm();
  const target = `ip:127.0.0.1:${port}`;
  const st = { started: 0, closed: 0, vanished: 0, reliableSent: 0, unreliableSent: 0, echoes: 0, violations: 0, violationSamples: [], stale: 0, failed: {}, sendRefused: {} };
  const gone = [];
  const rand = (a, b) => a + Math.random() * (b - a);

  class Client {
    async start() {
      this.ep = await NetworkingMessages.create({ bind: `${ip}:0`, config: { timeoutConnected: TIMEOUT_CONNECTED } });
      this.id = this.ep.identity.toString();
      this.nonce = (Math.random() * 2 ** 32) >>> 0;
      this.key = `${this.id}/${this.nonce}`;
      this.inc = 0;
      this.closing = false;
      this.ep.on('sessionFailed', (e) => {
        const r = `${e.info.endReason}`;
        st.failed[r] = (st.failed[r] ?? 0) + 1;
        this.broken = true;
      });
      this.ep.on('messages', () => this.drain());
      this.session();
    }

    session() {
      this.seq = 0;
      this.next = 0;
      this.broken = false;
      this.endsAt = Date.now() + rand(Number(lifeMin), Number(lifeMax)) * 1000;
      st.started++;
      this.timer = setInterval(() => this.tick(), Number(interval) + Math.floor(Math.random() * 20));
      this.tick();
    }

    tick() {
      if (Date.now() >= this.endsAt) return this.finish();
      const flags = this.broken ? SendFlags.Reliable | SendFlags.AutoRestartBrokenSession : SendFlags.Reliable;
      if (this.broken) {
        // The session broke (it should not, for a live client): start a new incarnation.
        this.inc++;
        this.seq = 0;
        this.next = 0;
        this.broken = false;
      }
      const r = this.ep.sendMessageToUser(target, message(this.nonce, this.inc, this.seq, Math.floor(rand(64, 1200))), flags, 0);
      if (r === EResult.OK) {
        this.seq++;
        st.reliableSent++;
      } else st.sendRefused[r] = (st.sendRefused[r] ?? 0) + 1;
      if (this.ep.sendMessageToUser(target, Buffer.alloc(40, 7), SendFlags.Unreliable, 1) === EResult.OK) st.unreliableSent++;
    }

    drain() {
      // A 'messages' event already on its way can arrive after close() (the endpoint then
      // refuses reads).
      if (this.closing) return;
      let batch;
      do {
        batch = this.ep.receiveMessagesOnChannel(0, 256);
        for (const m of batch) this.echo(m);
      } while (batch.length === 256);
    }

    echo(m) {
      const inc = m.data.readUInt32LE(4);
      const seq = m.data.readUInt32LE(8);
      if (m.data.readUInt32LE(0) !== this.nonce || inc !== this.inc) {
        st.stale++;
        return;
      }
      if (seq !== this.next) {
        st.violations++;
        if (st.violationSamples.length < 10) st.violationSamples.push({ id: this.id, inc, seq, expected: this.next });
      }
      this.next = seq + 1;
      st.echoes++;
    }

    async finish() {
      clearInterval(this.timer);
      if (Math.random() < 0.7) {
        this.ep.closeSessionWithUser(target);
        st.closed++;
        gone.push({ key: this.key, at: Date.now(), how: 'close' });
        await sleep(rand(500, 2000));
        this.inc++;
        this.session();
      } else {
        // Vanish: nothing more leaves or arrives, not even the close.
        this.ep.setConfig({ fakePacketLossSend: 100, fakePacketLossRecv: 100 });
        this.closing = true;
        gone.push({ key: this.key, at: Date.now(), how: 'vanish' });
        st.vanished++;
        await this.ep.close();
        await sleep(rand(500, 2000));
        await this.start();
      }
    }
  }

  const all = [];
  for (let i = 0; i < Number(count); i++) {
    const c = new Client();
    all.push(c);
    await c.start();
    // Spread the connects over a few seconds.
    if (i % 25 === 24) await sleep(50);
  }
  let last = process.cpuUsage();
  setInterval(() => {
    const cpu = process.cpuUsage(last);
    last = process.cpuUsage();
    process.send({ st, gone: gone.splice(0), live: all.map((c) => c.key), rss: process.memoryUsage().rss, fds: fds(), cpu: (cpu.user + cpu.system) / 2e6 });
  }, 2000);
  process.on('message', (m) => {
    if (m.stop) {
      for (const c of all) clearInterval(c.timer);
      process.send({ final: st, gone: gone.splice(0), live: all.map((c) => c.key) }, () => process.exit(0));
    }
  });
  process.send({ ready: true });
}

// ------------------------------------------------------------------ orchestrator
function parseArgs(argv) {
  const o = { seconds: 600, sessions: 1000, procs: 4, loss: 5, interval: 500, killEvery: null, json: null, svg: null, strict: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--seconds') o.seconds = Number(v());
    else if (a === '--sessions') o.sessions = Number(v());
    else if (a === '--procs') o.procs = Number(v());
    else if (a === '--loss') o.loss = Number(v());
    else if (a === '--interval') o.interval = Number(v());
    else if (a === '--kill-every') o.killEvery = Number(v());
    else if (a === '--json') o.json = v();
    else if (a === '--svg') o.svg = v();
    else if (a === '--strict') o.strict = true;
    else throw new Error(`unknown argument ${a}`);
  }
  o.killEvery ??= o.seconds >= 300 ? 120 : Math.max(20, Math.floor(o.seconds / 2));
  return o;
}

/** Shortest window after the warm-up over which the memory slope is judged (seconds). */
const RSS_JUDGED_AFTER_S = 240;

function slope(points) {
  // Least squares: units per minute.
  const n = points.length;
  if (n < 2) return null;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  const sxx = points.reduce((a, p) => a + (p.x - mx) ** 2, 0);
  const sxy = points.reduce((a, p) => a + (p.x - mx) * (p.y - my), 0);
  return sxx === 0 ? 0 : (sxy / sxx) * 60;
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** Two stacked line charts: server RSS (MiB) and throughput (messages/s) over time (s). */
function svg(samples, title) {
  const W = 760;
  const H = 260;
  const pad = { l: 64, r: 16, t: 28, b: 32 };
  const t0 = samples[0]?.t ?? 0;
  const panel = (y0, label, values, color, unit) => {
    const xs = samples.map((s) => (s.t - t0) / 1000);
    const xmax = Math.max(1, ...xs);
    const ymax = Math.max(1, ...values) * 1.1;
    const px = (x) => pad.l + (x / xmax) * (W - pad.l - pad.r);
    const py = (y) => y0 + pad.t + (1 - y / ymax) * (H - pad.t - pad.b);
    const pts = values.map((v, i) => `${px(xs[i]).toFixed(1)},${py(v).toFixed(1)}`).join(' ');
    const ticks = [0, 0.5, 1].map((f) => {
      const y = ymax * f;
      return `<text x="${pad.l - 6}" y="${py(y) + 4}" font-size="11" text-anchor="end">${y.toFixed(y >= 100 ? 0 : 1)}</text><line x1="${pad.l}" x2="${W - pad.r}" y1="${py(y)}" y2="${py(y)}" stroke="#ddd"/>`;
    });
    const xt = [0, 0.25, 0.5, 0.75, 1].map((f) => `<text x="${px(xmax * f)}" y="${y0 + H - 12}" font-size="11" text-anchor="middle">${(xmax * f).toFixed(0)} s</text>`);
    return `<text x="${pad.l}" y="${y0 + 18}" font-size="13">${esc(label)} (${unit})</text>${ticks.join('')}${xt.join('')}<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts}"/>${values.map((v, i) => `<circle cx="${px(xs[i]).toFixed(1)}" cy="${py(v).toFixed(1)}" r="2.5" fill="${color}"/>`).join('')}`;
  };
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${2 * H + 30}" viewBox="0 0 ${W} ${2 * H + 30}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="18" font-size="14" text-anchor="middle">${esc(title)}</text>
<g transform="translate(0,20)">${panel(0, 'server RSS', samples.map((s) => s.rss / 2 ** 20), '#d9480f', 'MiB')}
${panel(H, 'server throughput', samples.map((s) => s.msgsPerSec), '#1c7ed6', 'messages/s')}</g>
</svg>
`;
}

function next(proc, key) {
  return new Promise((resolve) => {
    const on = (m) => {
      if (m[key] !== undefined) {
        proc.off('message', on);
        resolve(m);
      }
    };
    proc.on('message', on);
  });
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const short = o.seconds < 300;
  const [lifeMin, lifeMax] = short ? [5, 20] : [10, 40];
  const started = Date.now();
  const spawn = (args) => fork(path.join(here, 'soak.mjs'), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const srv = spawn(['server', String(o.loss)]);
  const { port } = await next(srv, 'port');
  const samples = [];
  srv.on('message', (m) => {
    if (m.sample) {
      samples.push(m.sample);
      const s = m.sample;
      console.error(`soak: ${((s.t - started) / 1000).toFixed(0)} s  rss ${(s.rss / 2 ** 20).toFixed(1)} MiB  fds ${s.fds}  open ${s.open}  ${s.msgsPerSec.toFixed(0)} msg/s  lag p99 ${s.lagP99Ms.toFixed(1)} ms`);
    }
  });
  // Client processes: state kept across kills (their counters add up).
  const per = Math.ceil(o.sessions / o.procs);
  const procs = [];
  const totals = [];
  const gone = [];
  const kills = [];
  const crashes = [];
  let stopping = false;
  const startProc = async (k) => {
    const count = Math.min(per, o.sessions - k * per);
    const p = spawn(['clients', String(port), `127.0.0.${10 + k}`, String(count), String(lifeMin), String(lifeMax), String(o.interval)]);
    const slot = { p, last: null, live: [], clientRss: 0, killed: false };
    procs[k] = slot;
    p.on('exit', (code, signal) => {
      if (!slot.killed && !stopping) {
        crashes.push({ at: Date.now() - started, proc: k, code, signal });
        console.error(`soak: client process ${k} died (${code ?? signal}); restarting it`);
        totals.push(slot.last);
        for (const key of slot.live) gone.push({ key, at: Date.now(), how: 'crashed' });
        startProc(k);
      }
    });
    p.on('message', (m) => {
      if (m.st) slot.last = m.st;
      if (m.final) slot.last = m.final;
      if (m.gone) gone.push(...m.gone);
      if (m.live) slot.live = m.live;
      if (m.rss) slot.clientRss = m.rss;
    });
    await next(p, 'ready');
  };
  for (let k = 0; k < o.procs; k++) await startProc(k);
  console.error(`soak: ${o.sessions} sessions in ${o.procs} processes, a reliable and an unreliable message per session every ${o.interval} ms; ${o.loss} % loss each way at the server; a client process killed every ${o.killEvery} s`);
  const warmup = Math.max(20, o.seconds / 5);
  setTimeout(() => srv.send({ warmedUp: true }), warmup * 1000);
  let victim = 0;
  const end = started + o.seconds * 1000;
  let nextKill = started + o.killEvery * 1000;
  while (Date.now() < end) {
    await sleep(Math.min(1000, Math.max(0, end - Date.now())));
    if (Date.now() >= nextKill && Date.now() < end - 15_000) {
      nextKill += o.killEvery * 1000;
      const k = victim++ % o.procs;
      const slot = procs[k];
      totals.push(slot.last);
      const at = Date.now();
      for (const key of slot.live) gone.push({ key, at, how: 'killed' });
      kills.push({ at: at - started, proc: k, sessions: slot.live.length });
      slot.killed = true;
      slot.p.kill('SIGKILL');
      console.error(`soak: SIGKILL client process ${k} (${slot.live.length} sessions)`);
      await sleep(1000);
      await startProc(k);
    }
  }
  // Stop the clients (their sessions stay open: the server keeps them), then wait until every
  // session that went away has had timeoutConnected + 5 s to end at the server.
  stopping = true;
  const finals = await Promise.all(
    procs.filter((s) => s.p.connected).map((s) => {
      const f = next(s.p, 'final');
      s.p.send({ stop: true });
      return f;
    }),
  );
  for (const f of finals) totals.push(f.final);
  const live = new Set(finals.flatMap((f) => f.live));
  const lastGone = Math.max(0, ...gone.map((g) => g.at));
  const settle = Math.max(0, lastGone + TIMEOUT_CONNECTED + 5000 - Date.now());
  await sleep(Math.min(settle, TIMEOUT_CONNECTED + 5000));
  const { report } = await (async () => { const r = next(srv, 'report'); srv.send({ report: true }); return r; })();
  srv.send({ stop: true });
  // Stuck: the server still holds a session whose client went away (and not since back) more
  // than timeoutConnected + 5 s ago.
  const reportedAt = Date.now();
  const lastGoneBy = new Map();
  for (const g of gone) lastGoneBy.set(g.key, g);
  const stuck = report.openSessions.filter((s) => !live.has(s.key) && lastGoneBy.has(s.key) && reportedAt - lastGoneBy.get(s.key).at > TIMEOUT_CONNECTED + 5000);
  const unknownOpen = report.openSessions.filter((s) => !live.has(s.key) && !lastGoneBy.has(s.key));
  // Ends at the server, each with a reason; late ones (past timeoutConnected + 5 s).
  let late = 0;
  const lateSamples = [];
  for (const g of gone) {
    const e = report.ended[g.key];
    if (!e) continue;
    const took = e.at - g.at;
    if (g.how !== 'close' && took > TIMEOUT_CONNECTED + 5000) {
      late++;
      if (lateSamples.length < 5) lateSamples.push({ ...g, took, reason: e.reason });
    }
  }
  const sum = (k) => totals.reduce((a, t) => a + (t?.[k] ?? 0), 0);
  const merge = (k) => totals.reduce((acc, t) => { for (const [r, n] of Object.entries(t?.[k] ?? {})) acc[r] = (acc[r] ?? 0) + n; return acc; }, {});
  // Samples of the run itself: after the warm-up, before the clients stopped.
  const after = samples.filter((s) => (s.t - started) / 1000 >= warmup && s.t <= end);
  const slopeOf = (y) => slope(after.map((s) => ({ x: (s.t - started) / 1000, y: y(s) })));
  const rssSlope = slopeOf((s) => s.rss / 1024);
  const fdSlope = slopeOf((s) => s.fds);
  // Where growth would be: V8's reserved heap, or the rest (the native malloc heap, mostly).
  const v8Slope = slopeOf((s) => s.heapTotal / 1024);
  const restSlope = slopeOf((s) => (s.rss - s.heapTotal - s.external) / 1024);
  // What is judged: RSS less the part of V8's reservation its live objects do not fill.
  // V8 grows and shrinks that reservation by its own policy (11-43 MiB in one run while the
  // live JS heap stayed 7-15 MiB), which made RSS itself step by 15 MiB near the end of a
  // run without anything held; a leak, native or JS, still shows in this figure.
  const inUseSlope = slopeOf((s) => (s.rss - s.heapTotal + s.heap) / 1024);
  const summary = {
    date: new Date().toISOString(),
    options: o,
    sessions: { started: sum('started'), closedPolitely: sum('closed'), vanished: sum('vanished'), killedWithProcess: kills.reduce((a, k) => a + k.sessions, 0), kills },
    server: {
      reliableReceived: report.reliable,
      unreliableReceived: report.unreliable,
      violations: report.violations,
      violationSamples: report.violationSamples,
      ends: report.ends,
      echoRefused: report.echoRefused,
      openAtEnd: report.openSessions.length,
      stuck: stuck.length,
      stuckSamples: stuck.slice(0, 5),
      openUnknown: unknownOpen.length,
      endedLate: late,
      lateSamples,
      lagP99Ms: report.lagP99Ms,
      lagP999Ms: report.lagP999Ms,
      lagMaxMs: report.lagMaxMs,
    },
    clients: {
      reliableSent: sum('reliableSent'),
      unreliableSent: sum('unreliableSent'),
      echoesReceived: sum('echoes'),
      echoViolations: sum('violations'),
      staleEchoes: sum('stale'),
      sessionFailures: merge('failed'),
      sendRefused: merge('sendRefused'),
    },
    memory: {
      warmupSeconds: warmup,
      rssStartMiB: after[0] ? after[0].rss / 2 ** 20 : null,
      rssEndMiB: after.at(-1) ? after.at(-1).rss / 2 ** 20 : null,
      rssSlopeKiBPerMin: rssSlope,
      v8HeapTotalSlopeKiBPerMin: v8Slope,
      restSlopeKiBPerMin: restSlope,
      inUseSlopeKiBPerMin: inUseSlope,
      fdsStart: after[0]?.fds ?? null,
      fdsEnd: after.at(-1)?.fds ?? null,
      fdSlopePerMin: fdSlope,
    },
    samples,
  };
  summary.clientCrashes = crashes;
  const ok = summary.server.violations === 0 && summary.clients.echoViolations === 0 && summary.server.stuck === 0 && summary.server.endedLate === 0 && crashes.length === 0;
  const lagOk = summary.server.lagP99Ms < 10;
  // RSS swings by ~10 MiB with every process kill (a quarter of the sessions reconnect at
  // once), so a slope needs a window of several kill periods: shorter runs report it but do
  // not judge it. Open descriptors do not swing; they are judged in every run.
  const judgedOver = Math.max(RSS_JUDGED_AFTER_S, 2 * o.killEvery);
  const judgeMemory = (end - started) / 1000 - warmup >= judgedOver;
  const fdsFlat = (fdSlope ?? 0) < 1;
  const memoryFlat = judgeMemory ? inUseSlope !== null && inUseSlope < 1024 : null;
  const flat = fdsFlat && memoryFlat !== false;
  summary.pass = { delivery: ok, lag: lagOk, flat, memoryJudged: judgeMemory, fdsFlat, memoryFlat };
  const resDir = path.join(root, 'bench/results');
  mkdirSync(resDir, { recursive: true });
  const jsonPath = o.json ?? path.join(resDir, `soak-${summary.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(jsonPath, JSON.stringify(summary, null, 2));
  const svgPath = o.svg ?? path.join(resDir, 'soak.svg');
  writeFileSync(svgPath, svg(samples.filter((s) => s.t <= end), `soak: ${o.sessions} sessions, ${o.loss} % loss, ${o.seconds} s (${summary.date.slice(0, 10)})`));
  const f = (x, d = 1) => (x === null || x === undefined ? 'n/a' : x.toFixed(d));
  console.log(`soak ${o.seconds} s, ${o.sessions} sessions, ${o.loss} % loss each way:`);
  console.log(`  sessions: ${summary.sessions.started} started, ${summary.sessions.closedPolitely} closed, ${summary.sessions.vanished} vanished, ${summary.sessions.killedWithProcess} killed with their process (${kills.length} kills)`);
  console.log(`  reliable: ${summary.clients.reliableSent} sent, ${summary.server.reliableReceived} received in order (${summary.server.violations} out of order or repeated), ${summary.clients.echoesReceived} echoes (${summary.clients.echoViolations} out of order, ${summary.clients.staleEchoes} from an earlier incarnation)`);
  console.log(`  unreliable: ${summary.clients.unreliableSent} sent, ${summary.server.unreliableReceived} received`);
  console.log(`  session ends at the server: ${JSON.stringify(summary.server.ends)}; stuck ${summary.server.stuck}, late ${summary.server.endedLate}, open at end ${summary.server.openAtEnd} (unknown ${summary.server.openUnknown})`);
  console.log(`  client-side failures: ${JSON.stringify(summary.clients.sessionFailures)}; refused sends ${JSON.stringify(summary.clients.sendRefused)}; client process crashes ${crashes.length}`);
  console.log(`  server RSS ${f(summary.memory.rssStartMiB)} -> ${f(summary.memory.rssEndMiB)} MiB after ${warmup.toFixed(0)} s warm-up, slope ${f(rssSlope)} KiB/min; fds ${summary.memory.fdsStart} -> ${summary.memory.fdsEnd}, slope ${f(fdSlope, 2)}/min`);
  console.log(`    of it V8's heap (reserved) ${f(v8Slope)} KiB/min, the rest (native heap, buffers outside V8 excluded) ${f(restSlope)} KiB/min; in use (RSS less V8's unused reserve) ${f(inUseSlope)} KiB/min`);
  console.log(`  event loop delay p99 ${f(summary.server.lagP99Ms, 2)} ms, p99.9 ${f(summary.server.lagP999Ms, 2)} ms, max ${f(summary.server.lagMaxMs, 1)} ms`);
  const memoryVerdict = memoryFlat === null ? `not judged (a slope needs ${judgedOver} s after the warm-up)` : memoryFlat ? 'PASS' : 'FAIL';
  console.log(`  delivery/stuck ${ok ? 'PASS' : 'FAIL'}, lag p99 < 10 ms ${lagOk ? 'PASS' : 'FAIL'}, fds flat ${fdsFlat ? 'PASS' : 'FAIL'}, memory in use flat ${memoryVerdict}`);
  console.log(`JSON: ${path.relative(process.cwd(), jsonPath)}\nSVG:  ${path.relative(process.cwd(), svgPath)}`);
  process.exit(!ok || (o.strict && (!lagOk || !flat)) ? 1 : 0);
}

const roles = { server, clients };
if (roles[role]) roles[role]().catch((e) => { console.error(e); process.exit(1); });
else main().catch((e) => { console.error(e); process.exit(1); });
