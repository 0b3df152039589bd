#!/usr/bin/env node
// Two terminals chatting by identity. Every line you type goes, as a reliable message on
// channel 0, to every peer you know; every line received is printed with its sender's identity.
//
//   terminal 1:  node examples/chat/chat.mjs --listen 27020
//   terminal 2:  node examples/chat/chat.mjs --connect 127.0.0.1:27020
//
// `--listen` takes a port (binds all interfaces) or host:port. The listener learns a peer when
// that peer's first message opens a session, accepts it and answers from then on, and forgets
// it when its session ends. End with Ctrl-C, Ctrl-D (end of input) or `/quit`: each closes
// politely, so the others see you leave; `/peers` lists who you talk to.
import readline from 'node:readline';

import { NetworkingMessages, SendFlags, EResult } from 'netmessages';

const CHANNEL = 0;

function usage() {
  process.stderr.write('usage: chat.mjs --listen <port | host:port>   or   chat.mjs --connect <host:port>\n');
  process.exit(2);
}

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const listen = flag('--listen');
const connect = flag('--connect');
if ((listen === undefined) === (connect === undefined)) usage();

// Listening on a bare port: every interface. Connecting: the default bind (every interface,
// IPv4 and IPv6 where the OS allows), so any peer address works.
const bind = listen === undefined ? undefined : /^\d+$/.test(listen) ? `0.0.0.0:${listen}` : listen;
const me = await NetworkingMessages.create(bind === undefined ? {} : { bind });
const peers = new Map(); // identity text -> Identity
const say = (line) => process.stdout.write(`${line}\n`);

if (listen !== undefined) say(`listening on ${me.identity}`);
else {
  const id = `ip:${connect}`;
  peers.set(id, id);
  say(`talking to ${id} as ${me.identity}`);
}

me.on('sessionRequest', ({ identityRemote }) => {
  me.acceptSessionWithUser(identityRemote);
  peers.set(identityRemote.toString(), identityRemote);
  say(`* ${identityRemote} joined`);
});
// A peer that leaves politely closes its session; one that vanishes times out. Either way
// it is forgotten (and its session closed here, so a later return starts afresh).
const gone = (info, how) => {
  const id = info.identityRemote.toString();
  if (!peers.delete(id)) return;
  me.closeSessionWithUser(info.identityRemote);
  say(`* ${id} ${how}`);
};
me.on('sessionClosed', ({ info }) => gone(info, 'left'));
me.on('sessionFailed', ({ info }) => gone(info, `is gone (${info.endDebug || `end reason ${info.endReason}`})`));
me.on('messages', (ch) => {
  // Drain to empty: each call takes at most 256.
  for (let batch; (batch = me.receiveMessagesOnChannel(ch, 256)).length > 0; ) {
    for (const m of batch) say(`[${m.identityPeer}] ${m.data.toString('utf8')}`);
  }
});

let quitting = false;
async function quit() {
  if (quitting) return;
  quitting = true;
  // Wait (bounded) until the peers acknowledged what we sent, then close politely: close()
  // tells every peer the session is over.
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    const pending = [...peers.values()].some((p) => (me.getSessionConnectionInfo(p).status?.sentUnackedReliable ?? 0) > 0);
    if (!pending) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  await me.close();
  process.exit(0);
}
process.on('SIGINT', quit);
process.on('SIGTERM', quit);

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on('line', (line) => {
  const text = line.trim();
  if (text === '') return;
  if (text === '/quit') return rl.close();
  if (text === '/peers') return say(peers.size ? [...peers.keys()].join('\n') : '* nobody yet');
  if (peers.size === 0) return say('* nobody to talk to yet: wait for someone to --connect');
  for (const peer of peers.values()) {
    const r = me.sendMessageToUser(peer, text, SendFlags.Reliable, CHANNEL);
    if (r !== EResult.OK) say(`* could not send to ${peer}: ${EResult[r]} (${me.lastError()?.message})`);
  }
});
rl.on('close', quit);
