#!/usr/bin/env node
// The main demo (`npm start`): a dedicated server and a few bot clients on loopback.
//
// Each bot sends, 60 times a second, a reliable input message (channel 0) and an unreliable
// position update (channel 1), and once a second a reliable ping (channel 4) that the server
// echoes, so we measure the round trip through the whole stack. The server sends every bot
// an unreliable world snapshot per tick (channel 2) and a reliable chat line now and then
// (channel 3). A status line shows the traffic; a summary checks that every reliable message
// arrived, in order, exactly once.
//
// Usage: node examples/demo.mjs [--seconds N] [--bots N]
import { NetworkingMessages, SendFlags, EResult } from 'netmessages';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg('seconds', 10);
const BOTS = arg('bots', 4);
const TICK_MS = 1000 / 60;

const CH_INPUT = 0, CH_POSITION = 1, CH_SNAPSHOT = 2, CH_CHAT = 3, CH_PING = 4;

const totals = { msgs: 0, bytes: 0, sendErrors: 0, outOfOrder: 0 };
let window = { msgs: 0, bytes: 0 };
const rtts = [];

function count(msgs) {
  for (const m of msgs) {
    totals.msgs++;
    totals.bytes += m.size;
    window.msgs++;
    window.bytes += m.size;
  }
}

function send(from, to, data, flags, ch) {
  const r = from.sendMessageToUser(to, data, flags, ch);
  if (r !== EResult.OK) totals.sendErrors++;
}

/** Every message waiting on `ch`: read in batches until the queue is empty. */
function drain(ep, ch, max = 1024) {
  const all = [];
  for (let batch; (batch = ep.receiveMessagesOnChannel(ch, max)).length > 0; ) all.push(...batch);
  return all;
}

const server = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
const lastInput = new Map(); // bot identity -> last reliable input number seen
server.on('sessionRequest', ({ identityRemote }) => server.acceptSessionWithUser(identityRemote));

const bots = [];
for (let i = 0; i < BOTS; i++) {
  const ep = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
  const bot = { ep, seq: 0, chatSeen: 0 };
  ep.on('messages', (ch) => ch === CH_PING && receivePongs(bot));
  bots.push(bot);
}

function serverTick(tick) {
  answerPings();
  for (const ch of [CH_INPUT, CH_POSITION]) {
    const msgs = drain(server, ch);
    count(msgs);
    for (const m of msgs) {
      const peer = m.identityPeer.toString();
      if (ch === CH_INPUT) {
        const n = m.data.readUInt32LE(0);
        const prev = lastInput.get(peer) ?? 0;
        if (n !== prev + 1) totals.outOfOrder++;
        lastInput.set(peer, n);
      } else if (!lastInput.has(peer)) {
        lastInput.set(peer, 0);
      }
    }
  }
  const snapshot = Buffer.alloc(200, tick & 0xff);
  for (const peer of lastInput.keys()) {
    send(server, peer, snapshot, SendFlags.Unreliable, CH_SNAPSHOT);
    if (tick % 30 === 0) send(server, peer, `chat line ${tick / 30}`, SendFlags.Reliable, CH_CHAT);
  }
}

function botSend(bot, tick) {
  const input = Buffer.alloc(16);
  input.writeUInt32LE(++bot.seq, 0);
  send(bot.ep, server.identity, input, SendFlags.Reliable, CH_INPUT);
  send(bot.ep, server.identity, Buffer.alloc(48, bot.seq & 0xff), SendFlags.Unreliable, CH_POSITION);
  if (tick % 60 === 0) {
    const ping = Buffer.alloc(8);
    ping.writeDoubleLE(performance.now(), 0);
    send(bot.ep, server.identity, ping, SendFlags.ReliableNoNagle, CH_PING);
  }
}

function botReceive(bot) {
  count(drain(bot.ep, CH_SNAPSHOT));
  const chat = drain(bot.ep, CH_CHAT);
  count(chat);
  bot.chatSeen += chat.length;
}

// Pings are answered and timed as soon as they arrive (not at the next tick), so the round
// trip measures the library and the event loop, not the tick rate.
function receivePongs(bot) {
  const pongs = drain(bot.ep, CH_PING, 64);
  count(pongs);
  for (const p of pongs) rtts.push(performance.now() - p.data.readDoubleLE(0));
}
function answerPings() {
  const pings = drain(server, CH_PING, 64);
  count(pings);
  for (const m of pings) send(server, m.identityPeer, m.data, SendFlags.ReliableNoNagle, CH_PING);
}
server.on('messages', (ch) => ch === CH_PING && answerPings());

const fmt = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : `${Math.round(n)}`);
const tty = process.stdout.isTTY;
const started = performance.now();
let tick = 0;
let lastStatus = started;

await new Promise((resolve) => {
  const timer = setInterval(() => {
    tick++;
    serverTick(tick);
    for (const bot of bots) {
      botSend(bot, tick);
      botReceive(bot);
    }
    const now = performance.now();
    if (now - lastStatus >= 1000) {
      const secs = (now - lastStatus) / 1000;
      const rtt = rtts.length ? `${rtts[rtts.length - 1].toFixed(2)} ms` : 'n/a';
      // The transport's own view of bot 0's session, as Steam's GetSessionConnectionInfo gives it.
      const st = bots[0].ep.getSessionConnectionInfo(server.identity).status;
      const link = st
        ? `ping ${st.ping} ms  quality ${st.connectionQualityRemote < 0 ? 'n/a' : st.connectionQualityRemote.toFixed(2)}  out ${fmt(st.outPacketsPerSec)} pkt/s`
        : 'no session';
      const line = `[${((now - started) / 1000).toFixed(0).padStart(3)}s] ${fmt(window.msgs / secs)} msgs/s  ${fmt(window.bytes / secs)}B/s  sessions ${lastInput.size}/${BOTS}  app rtt ${rtt}  bot0 ${link}`;
      process.stdout.write(tty ? `\r${line}   ` : `${line}\n`);
      window = { msgs: 0, bytes: 0 };
      lastStatus = now;
    }
    if (now - started >= SECONDS * 1000) {
      clearInterval(timer);
      resolve();
    }
  }, TICK_MS);
});

// Let the last reliable messages land, then account for every one of them.
await new Promise((r) => setTimeout(r, 200));
serverTick(tick + 1);
for (const bot of bots) botReceive(bot);
if (tty) process.stdout.write('\n');

const sorted = [...rtts].sort((a, b) => a - b);
const pct = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))].toFixed(2) : 'n/a');
let missing = 0;
for (const bot of bots) missing += bot.seq - (lastInput.get(bot.ep.identity.toString()) ?? 0);
console.log(`summary: ${fmt(totals.msgs)} messages, ${fmt(totals.bytes)}B in ${SECONDS}s; ${BOTS} bots; ` +
  `rtt p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms; reliable inputs missing ${missing}, out of order ${totals.outOfOrder}; send errors ${totals.sendErrors}`);

await Promise.all([server.close(), ...bots.map((b) => b.ep.close())]);
process.exitCode = missing === 0 && totals.outOfOrder === 0 && totals.sendErrors === 0 ? 0 : 1;
