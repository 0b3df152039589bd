#!/usr/bin/env node
// An authoritative dedicated server with bot clients, and live stats.
//
// Clients send their inputs (a move direction, sequence-numbered) reliably on channel 0; the
// server alone moves the players, at 30 ticks a second, and sends every client an unreliable
// snapshot of the whole world on channel 1 (newest wins; a lost one is simply superseded).
// A bot checks that the server's position for it matches what its own inputs imply.
//
//   node examples/dedicated-server/server.mjs --port 27020 --bots 8 --seconds 0   # run until Ctrl-C
//   node examples/dedicated-server/server.mjs --bots 4 --seconds 10                # self-contained, loopback
//   node examples/dedicated-server/server.mjs --connect 127.0.0.1:27020 --bots 3   # bots only, against a server
//
// Ends (with --seconds) by printing `summary: ...` and exiting non-zero if any check failed.
import { NetworkingMessages, SendFlags, EResult } from '../../dist/index.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const PORT = Number(opt('port', 0));
const HOST = opt('host', '127.0.0.1');
const BOTS = Number(opt('bots', 4));
const SECONDS = Number(opt('seconds', 10));
const CONNECT = opt('connect', undefined);
const TICK_HZ = 30;
const CH_INPUT = 0;
const CH_SNAPSHOT = 1;

const DIRS = [[1, 0], [0, 1], [-1, 0], [0, -1]];
const fmt = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : `${Math.round(n)}`);
const traffic = { in: 0, out: 0, inBytes: 0, outBytes: 0, sendErrors: 0 };

// ---- the server: owns the world ---------------------------------------------------------
async function startServer() {
  const ep = await NetworkingMessages.create({ bind: `${HOST}:${PORT}` });
  const players = new Map(); // identity text -> { id, x, y, lastInput }
  let tick = 0;
  ep.on('sessionRequest', ({ identityRemote }) => {
    ep.acceptSessionWithUser(identityRemote);
    players.set(identityRemote.toString(), { id: players.size + 1, x: 0, y: 0, lastInput: 0, identity: identityRemote });
  });
  const step = () => {
    tick++;
    for (const m of ep.receiveMessagesOnChannel(CH_INPUT, 4096)) {
      traffic.in++;
      traffic.inBytes += m.size;
      const p = players.get(m.identityPeer.toString());
      if (p === undefined) continue;
      const seq = m.data.readUInt32LE(0);
      const [dx, dy] = DIRS[m.data.readUInt8(4) % 4];
      p.x += dx;
      p.y += dy;
      p.lastInput = seq; // reliable + ordered: seq is always lastInput + 1
    }
    // Snapshot: tick, count, then (id, lastInput, x, y) per player.
    const snap = Buffer.alloc(8 + players.size * 16);
    snap.writeUInt32LE(tick, 0);
    snap.writeUInt32LE(players.size, 4);
    let o = 8;
    for (const p of players.values()) {
      snap.writeUInt32LE(p.id, o);
      snap.writeUInt32LE(p.lastInput, o + 4);
      snap.writeInt32LE(p.x, o + 8);
      snap.writeInt32LE(p.y, o + 12);
      o += 16;
    }
    for (const p of players.values()) {
      const r = ep.sendMessageToUser(p.identity, snap, SendFlags.UnreliableNoNagle, CH_SNAPSHOT);
      if (r === EResult.OK) {
        traffic.out++;
        traffic.outBytes += snap.length;
      } else traffic.sendErrors++;
    }
  };
  const timer = setInterval(step, 1000 / TICK_HZ);
  return { ep, players, stop: () => clearInterval(timer), tick: () => tick };
}

// ---- a bot: sends inputs, predicts its own position, checks the server agrees -----------
async function startBot(serverId) {
  const ep = await NetworkingMessages.create({ bind: /^ip:(127\.|\[::1\])/.test(serverId) ? '127.0.0.1:0' : '0.0.0.0:0' });
  const bot = { ep, seq: 0, history: [[0, 0]], snapshots: 0, mismatches: 0, lastSeen: 0, playersSeen: 0 };
  ep.on('messages', (ch) => {
    if (ch !== CH_SNAPSHOT) return;
    for (const m of ep.receiveMessagesOnChannel(ch, 256)) {
      bot.snapshots++;
      traffic.in++;
      traffic.inBytes += m.size;
      const count = m.data.readUInt32LE(4);
      bot.playersSeen = Math.max(bot.playersSeen, count);
      // We cannot tell which entry is ours by id, so check that *some* entry matches our
      // predicted position for the input number it reports (ids are the server's business).
      let ok = false;
      for (let i = 0, o = 8; i < count; i++, o += 16) {
        const last = m.data.readUInt32LE(o + 4);
        const x = m.data.readInt32LE(o + 8);
        const y = m.data.readInt32LE(o + 12);
        const want = bot.history[last];
        if (want !== undefined && want[0] === x && want[1] === y && last <= bot.seq) {
          ok = true;
          bot.lastSeen = Math.max(bot.lastSeen, last);
        }
      }
      if (!ok && bot.seq > 0) bot.mismatches++;
    }
  });
  const send = () => {
    const dir = (bot.seq * 7 + bot.ep.localAddress.port) % 4;
    const input = Buffer.alloc(8);
    input.writeUInt32LE(++bot.seq, 0);
    input.writeUInt8(dir, 4);
    const [px, py] = bot.history[bot.seq - 1];
    bot.history.push([px + DIRS[dir][0], py + DIRS[dir][1]]);
    const r = ep.sendMessageToUser(serverId, input, SendFlags.Reliable, CH_INPUT);
    if (r === EResult.OK) {
      traffic.out++;
      traffic.outBytes += input.length;
    } else traffic.sendErrors++;
  };
  const timer = setInterval(send, 50);
  bot.stop = () => clearInterval(timer);
  return bot;
}

const server = CONNECT === undefined ? await startServer() : undefined;
const serverId = server ? server.ep.identity.toString().replace('ip:0.0.0.0:', 'ip:127.0.0.1:') : `ip:${CONNECT}`;
if (server) console.log(`server listening on ${server.ep.identity} (${TICK_HZ} ticks/s)`);
const bots = [];
for (let i = 0; i < BOTS; i++) bots.push(await startBot(serverId));

const tty = process.stdout.isTTY;
const started = performance.now();
let last = { ...traffic, at: started };
const statsTimer = setInterval(() => {
  const now = performance.now();
  const secs = (now - last.at) / 1000;
  const st = bots[0]?.ep.getSessionConnectionInfo(serverId).status;
  const line =
    `[${((now - started) / 1000).toFixed(0).padStart(3)}s] ` +
    (server ? `tick ${server.tick()}  players ${server.players.size}  ` : '') +
    `in ${fmt((traffic.in - last.in) / secs)} msg/s ${fmt((traffic.inBytes - last.inBytes) / secs)}B/s  ` +
    `out ${fmt((traffic.out - last.out) / secs)} msg/s ${fmt((traffic.outBytes - last.outBytes) / secs)}B/s` +
    (st ? `  bot0 ping ${st.ping} ms` : '');
  process.stdout.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
  last = { ...traffic, at: now };
}, 1000);

await new Promise((resolve) => {
  if (SECONDS > 0) setTimeout(resolve, SECONDS * 1000);
  process.once('SIGINT', resolve);
  process.once('SIGTERM', resolve);
});
clearInterval(statsTimer);
for (const b of bots) b.stop();
// Let the last inputs reach the server and one more snapshot come back.
await new Promise((r) => setTimeout(r, 500));
server?.stop();
if (tty) process.stdout.write('\n');

const snapshots = bots.map((b) => b.snapshots);
const behind = bots.map((b) => b.seq - b.lastSeen);
const mismatches = bots.reduce((n, b) => n + b.mismatches, 0);
const ok =
  bots.every((b) => b.snapshots > 0 && b.lastSeen > 0) &&
  mismatches === 0 &&
  traffic.sendErrors === 0 &&
  (server === undefined || server.players.size === BOTS);
console.log(
  `summary: ${server ? `${server.players.size} players, ${server.tick()} ticks; ` : ''}${BOTS} bots; ` +
    `snapshots per bot min ${Math.min(...snapshots)}; inputs not yet confirmed max ${Math.max(...behind)}; ` +
    `position mismatches ${mismatches}; send errors ${traffic.sendErrors}; ${ok ? 'ok' : 'FAILED'}`,
);
await Promise.all([server?.ep.close(), ...bots.map((b) => b.ep.close())]);
process.exitCode = ok ? 0 : 1;
