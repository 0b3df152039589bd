#!/usr/bin/env node
// A flood of valid-cookie ConnectRequests against a server with a live session, over real
// loopback: does the handshake budget keep the live session's latency and the server's CPU
// in bounds?
//
//   node bench/handshake-flood.mjs [--cycles 8] [--phase 3] [--sources 64] [--ports 16]
//                                  [--rate 40000] [--live-nice -10] [--strict] [--json FILE]
//
// Processes: a server (one endpoint: accepts sessions, echoes channel 0), a live client
// (a ReliableNoNagle ping every 5 ms, round-trip times per phase), and flooders that own
// `--sources` loopback addresses (127.0.0.2 ...), `--ports` UDP sockets on each. Each flooder
// socket asks the server for its own cookie with a real ChallengeRequest (so every request is
// one a real host could send), then sends the ConnectRequest of a genuine client (captured
// once: its certificate and signed crypt info are valid) with a fresh client id and its cookie,
// as fast as `--rate` allows in all. Every one of them passes the cookie check and asks for a
// signature check and a key exchange. Flooders run at nice 19: the attackers' CPU stands for
// other machines', it must not be what slows the server down on a 2-core box. On a machine
// busy with other work, --live-nice -10 (root) runs the server and the live client ahead of
// it, so the figures measure the flood, not the neighbours.
//
// Phases: quiet (the live session alone) and flood, alternating (--cycles of --phase seconds
// each, with a second between to settle). Reported: the live session's
// round trip p50/p99 per phase and the flood/quiet p99 ratio (target: within 2x), the server
// process's CPU per phase in cores (target: under 1), the flood rate achieved and how many
// requests the server answered with a ConnectOK (the handshakes it ran).
import { fork } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const role = process.argv[2];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nm = () => import(path.join(root, 'dist/index.mjs'));

// ------------------------------------------------------------------ wire bits (GNS v13)
const CHALLENGE_REQUEST = 32;
const CHALLENGE_REPLY = 33;
const CONNECT_REQUEST = 34;
const CONNECT_OK = 35;

function varint(n) {
  const out = [];
  let v = BigInt(n);
  while (v >= 0x80n) {
    out.push(Number((v & 0x7fn) | 0x80n));
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

/** Top-level protobuf fields of `buf`: [{ field, wireType, start (of value), end }]. */
function fields(buf) {
  const out = [];
  let i = 0;
  const readVarint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(readVarint());
    const field = key >>> 3;
    const wireType = key & 7;
    const start = i;
    if (wireType === 0) readVarint();
    else if (wireType === 1) i += 8;
    else if (wireType === 5) i += 4;
    else if (wireType === 2) {
      const len = Number(readVarint());
      out.push({ field, wireType, start: i, end: i + len });
      i += len;
      continue;
    } else throw new Error(`wire type ${wireType}`);
    out.push({ field, wireType, start, end: i });
  }
  return out;
}

function challengeRequest(connectionId) {
  const body = Buffer.from([0x0d, 0, 0, 0, 0, 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, ...varint(13)]);
  body.writeUInt32LE(connectionId, 1);
  body.writeBigUInt64LE(BigInt(Date.now()) * 1000n, 6);
  const d = Buffer.alloc(512);
  d[0] = CHALLENGE_REQUEST;
  d.writeUInt16LE(body.length, 1);
  body.copy(d, 3);
  return d;
}

function challengeReply(req, cookie) {
  // Echo the request's connection id and timestamp, as a server does.
  const len = req.readUInt16LE(1);
  const body = req.subarray(3, 3 + len);
  const f = fields(body);
  const id = f.find((x) => x.field === 1);
  const ts = f.find((x) => x.field === 3);
  const out = [CHALLENGE_REPLY, 0x0d, ...body.subarray(id.start, id.end), 0x11];
  const c = Buffer.alloc(8);
  c.writeBigUInt64LE(cookie);
  out.push(...c);
  if (ts) out.push(0x19, ...body.subarray(ts.start, ts.end));
  out.push(0x20, ...varint(13));
  return Buffer.from(out);
}

/** A genuine client's ConnectRequest: a netmessages endpoint dials a socket that answers its
 * ChallengeRequest with a made-up cookie, and the request that follows is kept. */
async function captureConnectRequest() {
  const { NetworkingMessages, SendFlags } = await nm();
  const sock = dgram.createSocket('udp4');
  await new Promise((r) => sock.bind(0, '127.0.0.1', r));
  const got = new Promise((resolve) => {
    sock.on('message', (m, rinfo) => {
      if (m[0] === CHALLENGE_REQUEST) sock.send(challengeReply(m, 0x1122334455667788n), rinfo.port, rinfo.address);
      else if (m[0] === CONNECT_REQUEST) resolve(Buffer.from(m));
    });
  });
  const client = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
  client.sendMessageToUser(`ip:127.0.0.1:${sock.address().port}`, 'hello', SendFlags.Reliable, 0);
  const req = await Promise.race([got, sleep(5000).then(() => null)]);
  await client.close();
  sock.close();
  if (!req) throw new Error('no ConnectRequest captured');
  return req;
}

// ------------------------------------------------------------------ roles
async function server() {
  const { NetworkingMessages, SendFlags } = await nm();
  const ep = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
  let sessions = 0;
  ep.on('sessionRequest', (e) => {
    sessions++;
    // Only the live client (on 127.0.0.1; the flood comes from 127.0.0.2 on) is accepted;
    // the flood's sessions stay pending and time out.
    if (e.identityRemote.toString().startsWith('ip:127.0.0.1:')) ep.acceptSessionWithUser(e.identityRemote);
  });
  // 'messages' fires when the queue goes from empty to non-empty: read it empty.
  ep.on('messages', () => {
    let batch;
    do {
      batch = ep.receiveMessagesOnChannel(0, 256);
      for (const m of batch) ep.sendMessageToUser(m.identityPeer, m.data, SendFlags.ReliableNoNagle, 0);
    } while (batch.length === 256);
  });
  process.on('message', async (m) => {
    if (m.stop) {
      await ep.close();
      process.exit(0);
    }
  });
  let last = process.cpuUsage();
  let lastAt = process.hrtime.bigint();
  setInterval(() => {
    const now = process.hrtime.bigint();
    const cpu = process.cpuUsage(last);
    const wallUs = Number(now - lastAt) / 1000;
    last = process.cpuUsage();
    lastAt = now;
    process.send({ cpu: (cpu.user + cpu.system) / wallUs, sessions, rss: process.memoryUsage().rss });
  }, 1000);
  process.send({ port: ep.localAddress.port });
}

async function client() {
  const { NetworkingMessages, SendFlags } = await nm();
  const [port] = process.argv.slice(3);
  const target = `ip:127.0.0.1:${port}`;
  const ep = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
  let phase = 'warm';
  const rtts = {};
  const sentAt = new Map();
  let seq = 0;
  ep.on('messages', () => {
    for (let batch = ep.receiveMessagesOnChannel(0, 256); batch.length > 0; batch = ep.receiveMessagesOnChannel(0, 256)) for (const m of batch) {
      const s = m.data.readUInt32LE(0);
      const t0 = sentAt.get(s);
      if (t0 === undefined) continue;
      sentAt.delete(s);
      (rtts[t0.phase] ??= []).push(Number(process.hrtime.bigint() - t0.at) / 1000);
    }
  });
  const timer = setInterval(() => {
    const b = Buffer.alloc(32);
    b.writeUInt32LE(seq);
    sentAt.set(seq++, { at: process.hrtime.bigint(), phase });
    ep.sendMessageToUser(target, b, SendFlags.ReliableNoNagle, 0);
  }, 5);
  process.on('message', async (m) => {
    if (m.phase) phase = m.phase;
    if (m.stop) {
      clearInterval(timer);
      process.send({ rtts, lost: sentAt.size });
      await ep.close();
      process.exit(0);
    }
  });
  process.send({ identity: ep.identity.toString() });
}

async function flooder() {
  const [port, firstIp, ipCount, portsPerIp, rate, templateHex] = process.argv.slice(3);
  const template = Buffer.from(templateHex, 'hex');
  const body = template.subarray(1);
  const f = fields(body);
  const idAt = 1 + f.find((x) => x.field === 1 && x.wireType === 5).start;
  const cookieAt = 1 + f.find((x) => x.field === 2 && x.wireType === 1).start;
  const socks = [];
  let id = (process.pid * 7919) >>> 0;
  const st = { sent: 0, ok: 0, other: 0, cookies: 0 };
  for (let i = 0; i < Number(ipCount); i++) {
    const ip = `127.0.0.${Number(firstIp) + i}`;
    for (let k = 0; k < Number(portsPerIp); k++) {
      const s = dgram.createSocket('udp4');
      await new Promise((r) => s.bind(0, ip, r));
      const entry = { s, cookie: null, asked: 0 };
      s.on('message', (m) => {
        if (m[0] === CHALLENGE_REPLY) {
          const c = fields(m.subarray(1)).find((x) => x.field === 2);
          if (c) {
            entry.cookie = m.readBigUInt64LE(1 + c.start);
            st.cookies++;
          }
        } else if (m[0] === CONNECT_OK) st.ok++;
        else st.other++;
      });
      socks.push(entry);
    }
  }
  const ask = (e) => {
    e.asked = Date.now();
    e.s.send(challengeRequest((Math.random() * 2 ** 32) >>> 0), Number(port), '127.0.0.1');
  };
  for (const e of socks) ask(e);
  let running = false;
  const perTick = Math.max(1, Math.round(Number(rate) / 1000));
  let tick = null;
  let next = 0;
  // Cookies are kept fresh whether or not the flood runs (they live 4 to 8 s).
  setInterval(() => {
    for (const e of socks) if (Date.now() - e.asked > 3000) ask(e);
  }, 500);
  process.on('message', (m) => {
    if (m.pause) running = false;
    if (m.go && !running) running = true;
    if (m.go && tick === null) {
      tick = setInterval(() => {
        if (!running) return;
        for (let n = 0; n < perTick; n++) {
          const e = socks[next++ % socks.length];
          if (e.cookie === null) continue;
          const d = Buffer.from(template);
          id = (id + 1) >>> 0 || 1;
          d.writeUInt32LE(id, idAt);
          d.writeBigUInt64LE(e.cookie, cookieAt);
          e.s.send(d, Number(port), '127.0.0.1');
          st.sent++;
        }
      }, 1);
    }
    if (m.stop) {
      clearInterval(tick);
      process.send({ final: st });
      for (const e of socks) e.s.close();
      process.exit(0);
    }
  });
  setInterval(() => process.send({ st }), 1000);
  process.send({ ready: socks.length });
}

// ------------------------------------------------------------------ orchestrator
function percentile(xs, p) {
  if (!xs || xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

function parseArgs(argv) {
  const o = { cycles: 8, phase: 3, sources: 64, ports: 16, rate: 40000, flooders: 2, liveNice: 0, strict: false, json: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--cycles') o.cycles = Number(v());
    else if (a === '--phase') o.phase = Number(v());
    else if (a === '--sources') o.sources = Number(v());
    else if (a === '--ports') o.ports = Number(v());
    else if (a === '--rate') o.rate = Number(v());
    else if (a === '--flooders') o.flooders = Number(v());
    else if (a === '--live-nice') o.liveNice = Number(v());
    else if (a === '--strict') o.strict = true;
    else if (a === '--json') o.json = v();
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

function child(args, { niceness = 0 } = {}) {
  const opts = { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] };
  if (niceness) {
    // `nice` runs node at the given niceness; fork's IPC channel still works through exec.
    return fork(path.join(here, 'handshake-flood.mjs'), args, { ...opts, execPath: 'nice', execArgv: ['-n', String(niceness), process.execPath] });
  }
  return fork(path.join(here, 'handshake-flood.mjs'), args, opts);
}

const next = (proc, key) => new Promise((resolve) => {
  const on = (m) => {
    if (m[key] !== undefined) {
      proc.off('message', on);
      resolve(m);
    }
  };
  proc.on('message', on);
});

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const template = await captureConnectRequest();
  const srv = child(['server'], { niceness: o.liveNice });
  const { port } = await next(srv, 'port');
  const cpu = { current: 'warm' };
  const cpuByPhase = {};
  srv.on('message', (m) => {
    if (m.cpu !== undefined) (cpuByPhase[cpu.current] ??= []).push(m.cpu);
  });
  const cli = child(['client', String(port)], { niceness: o.liveNice });
  await next(cli, 'identity');
  const floods = [];
  const per = Math.ceil(o.sources / o.flooders);
  for (let k = 0; k < o.flooders; k++) {
    const count = Math.min(per, o.sources - k * per);
    if (count <= 0) break;
    const fl = child(['flooder', String(port), String(2 + k * per), String(count), String(o.ports), String(Math.round(o.rate / o.flooders)), template.toString('hex')], { niceness: 19 });
    floods.push(fl);
    await next(fl, 'ready');
  }
  const phase = (name) => {
    cpu.current = name;
    cli.send({ phase: name });
  };
  await sleep(2000);
  // Quiet and flood alternate, so a change in the machine's load (other work on it) falls on
  // both alike; round trips and CPU samples are pooled per phase.
  for (let c = 0; c < o.cycles; c++) {
    phase('quiet');
    await sleep(o.phase * 1000);
    phase('flood');
    for (const fl of floods) fl.send({ go: true });
    await sleep(o.phase * 1000);
    for (const fl of floods) fl.send({ pause: true });
    phase('settle');
    // The flood's last requests and sessions drain before the next quiet phase counts.
    await sleep(1000);
  }
  const finals = await Promise.all(floods.map((fl) => { const p = next(fl, 'final'); fl.send({ stop: true }); return p; }));
  const res = next(cli, 'rtts');
  cli.send({ stop: true });
  const { rtts, lost } = await res;
  srv.send({ stop: true });
  const floodSeconds = o.cycles * o.phase;
  const sent = finals.reduce((a, f) => a + f.final.sent, 0);
  const ok = finals.reduce((a, f) => a + f.final.ok, 0);
  const mean = (xs) => (xs && xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  const summary = {
    date: new Date().toISOString(),
    options: o,
    flood: { requestsPerSec: sent / floodSeconds, connectOkPerSec: ok / floodSeconds, requests: sent, connectOks: ok, sockets: o.sources * o.ports },
    rttUs: Object.fromEntries(['quiet', 'flood'].map((p) => [p, { n: rtts[p]?.length ?? 0, p50: percentile(rtts[p], 50), p99: percentile(rtts[p], 99), max: percentile(rtts[p], 100) }])),
    serverCores: Object.fromEntries(['quiet', 'flood'].map((p) => [p, { mean: mean(cpuByPhase[p]), max: cpuByPhase[p] ? Math.max(...cpuByPhase[p]) : null }])),
    pingsLost: lost,
  };
  summary.p99Ratio = summary.rttUs.flood.p99 / summary.rttUs.quiet.p99;
  summary.pass = summary.p99Ratio <= 2 && summary.serverCores.flood.max < 1;
  const f1 = (x) => (x === null ? 'n/a' : x.toFixed(1));
  console.log(`flood: ${summary.flood.requestsPerSec.toFixed(0)} valid-cookie ConnectRequests/s from ${o.sources} sources x ${o.ports} ports; ${summary.flood.connectOkPerSec.toFixed(0)}/s answered with ConnectOK (handshakes run)`);
  for (const p of ['quiet', 'flood']) {
    const r = summary.rttUs[p];
    const c = summary.serverCores[p];
    console.log(`${p.padEnd(6)} live RTT p50 ${f1(r.p50)} us, p99 ${f1(r.p99)} us, max ${f1(r.max)} us (${r.n} pings); server CPU mean ${c.mean?.toFixed(2)} cores, max ${c.max?.toFixed(2)}`);
  }
  console.log(`p99 flood/quiet: ${summary.p99Ratio.toFixed(2)}x (target <= 2x); server CPU under flood max ${summary.serverCores.flood.max?.toFixed(2)} cores (target < 1): ${summary.pass ? 'PASS' : 'FAIL'}`);
  const out = o.json ?? path.join(root, 'bench/results', `flood-${summary.date.replace(/[:.]/g, '-')}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(summary, null, 2));
  console.log(`JSON: ${path.relative(process.cwd(), out)}`);
  process.exit(o.strict && !summary.pass ? 1 : 0);
}

const roles = { server, client, flooder };
if (roles[role]) roles[role]().catch((e) => { console.error(e); process.exit(1); });
else main().catch((e) => { console.error(e); process.exit(1); });
