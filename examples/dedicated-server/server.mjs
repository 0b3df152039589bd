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
// A player counts as gone when its session ends: politely (the bot closed, 'sessionClosed') or
// not (it vanished and timed out, 'sessionFailed'). At the end the bots leave first, and the
// server checks it saw every one of them go.
//
// Ends (with --seconds, or Ctrl-C) by printing `summary: ...` and exiting non-zero if any
// check failed.
import { NetworkingMessages, SendFlags, EResult } from 'netmessages';

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

/** Every message waiting on `ch`, read `max` at a time until the queue is empty. */
function* drain(ep, ch, max) {
  for (let batch; (batch = ep.receiveMessagesOnChannel(ch, max)).length > 0; ) yield* batch;
}

// ---- the server: owns the world ---------------------------------------------------------
async function startServer() {
  const ep = await NetworkingMessages.create({ bind: `${HOST}:${PORT}` });
  const players = new Map(); // identity text -> { id, x, y, lastInput }
  const counts = { joined: 0, left: 0, timedOut: 0 };
  let tick = 0;
  let nextId = 1;
  ep.on('sessionRequest', ({ identityRemote }) => {
    ep.acceptSessionWithUser(identityRemote);
    players.set(identityRemote.toString(), { id: nextId++, x: 0, y: 0, lastInput: 0, identity: identityRemote });
    counts.joined++;
  });
  // The session ended: the player is gone. Closing our side frees it at once (and a player
  // that comes back starts a new session).
  const gone = (info, timedOut) => {
    if (!players.delete(info.identityRemote.toString())) return;
    ep.closeSessionWithUser(info.identityRemote);
    if (timedOut) counts.timedOut++;
    else counts.left++;
  };
  ep.on('sessionClosed', ({ info }) => gone(info, false));
  ep.on('sessionFailed', ({ info }) => gone(info, true));
  const step = () => {
    tick++;
    // Drain the inputs to empty each tick.
    for (const m of drain(ep, CH_INPUT, 4096)) {
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
  return { ep, players, counts, stop: () => clearInterval(timer), tick: () => tick };
}

// ---- a bot: sends inputs, predicts its own position, checks the server agrees -----------
async function startBot(serverId) {
  // The default bind: every interface, IPv4 and IPv6 where the OS allows.
  const ep = await NetworkingMessages.create();
  const bot = { ep, seq: 0, history: [[0, 0]], snapshots: 0, mismatches: 0, lastSeen: 0, playersSeen: 0 };
  ep.on('messages', (ch) => {
    if (ch !== CH_SNAPSHOT) return;
    for (const m of drain(ep, ch, 256)) {
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
// An endpoint bound to every interface names itself by its loopback address: usable here.
const serverId = server ? server.ep.identity.toString() : `ip:${CONNECT}`;
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
if (tty) process.stdout.write('\n');
// The world stops (no more snapshots: one could race a leaving bot), then the bots leave
// (politely: close() tells the server), and the server sees each go.
server?.stop();
const playersAtEnd = server?.players.size ?? 0;
await Promise.all(bots.map((b) => b.ep.close()));
if (server) {
  const deadline = Date.now() + 3000;
  while (server.players.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

const snapshots = bots.map((b) => b.snapshots);
const behind = bots.map((b) => b.seq - b.lastSeen);
const mismatches = bots.reduce((n, b) => n + b.mismatches, 0);
const c = server?.counts;
const ok =
  bots.every((b) => b.snapshots > 0 && b.lastSeen > 0) &&
  mismatches === 0 &&
  traffic.sendErrors === 0 &&
  (server === undefined || (playersAtEnd === BOTS && c.joined === BOTS && c.left === BOTS && server.players.size === 0));
console.log(
  `summary: ${server ? `${playersAtEnd} players, ${server.tick()} ticks; ${c.joined} joined, ${c.left} left, ${c.timedOut} timed out; ` : ''}${BOTS} bots; ` +
    `snapshots per bot min ${Math.min(...snapshots)}; inputs not yet confirmed max ${Math.max(...behind)}; ` +
    `position mismatches ${mismatches}; send errors ${traffic.sendErrors}; ${ok ? 'ok' : 'FAILED'}`,
);
await server?.ep.close();
process.exitCode = ok ? 0 : 1;
