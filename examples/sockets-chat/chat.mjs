#!/usr/bin/env node
// A chat server and client on the connection API (NetworkingSockets), speaking the same
// protocol as GameNetworkingSockets' example_chat: every message is one line of UTF-8 text,
// reliable, on lane 0, with no header. So either side can be the GNS example instead.
//
//   terminal 1:  node examples/sockets-chat/chat.mjs --server [--port 27020]
//   terminal 2:  node examples/sockets-chat/chat.mjs --client 127.0.0.1:27020
//
// The server greets each new client, tells it who else is here, relays every line to
// everyone else as "nick: line", and knows `/nick <name>`. A client's `/quit` (or Ctrl-D)
// closes its connection politely; the server's `/quit` (or Ctrl-C) says goodbye to every
// client and closes with linger, so the goodbye arrives.
import readline from 'node:readline';

import { NetworkingSockets, ConnectionState, EResult, SendFlags } from 'netmessages';

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const isServer = args.includes('--server');
const serverAddress = flag('--client');
if (isServer === (serverAddress !== undefined)) {
  process.stderr.write('usage: chat.mjs --server [--port N]   or   chat.mjs --client <host:port>\n');
  process.exit(2);
}

const sockets = await NetworkingSockets.create();
const say = (conn, text) => {
  const { result } = sockets.sendMessageToConnection(conn, text, SendFlags.Reliable);
  if (result !== EResult.OK) console.log(`(could not send to ${conn}: ${EResult[result]})`);
};
const input = readline.createInterface({ input: process.stdin });

let stopping = false;
async function shutdown(code = 0) {
  if (stopping) return;
  stopping = true;
  input.close();
  await sockets.close();
  process.exit(code);
}

if (isServer) {
  const port = Number(flag('--port') ?? 27020);
  const listen = sockets.createListenSocketIP(`0.0.0.0:${port}`);
  const bound = sockets.getListenSocketAddress(listen);
  console.log(`listening on port ${bound.port}`);
  /** Nick by connection. */
  const clients = new Map();
  const everyoneBut = (except, text) => {
    for (const conn of clients.keys()) if (conn !== except) say(conn, text);
  };
  sockets.on('connectionStatusChanged', ({ conn, info, oldState }) => {
    switch (info.state) {
      case ConnectionState.Connecting:
        // A new client waits for us: accept it (a game would check a ban list here).
        if (sockets.acceptConnection(conn) !== EResult.OK) sockets.closeConnection(conn);
        break;
      case ConnectionState.Connected: {
        const nick = `Traveller${Math.floor(Math.random() * 90000 + 10000)}`;
        console.log(`${info.remoteAddress} connected as ${nick}`);
        say(conn, `Welcome, ${nick}. Type /nick <name> to choose another name.`);
        say(conn, clients.size === 0 ? 'Nobody else is here yet.' : `${clients.size} others are here:`);
        for (const other of clients.values()) say(conn, other);
        everyoneBut(conn, `${nick} has joined.`);
        clients.set(conn, nick);
        sockets.setConnectionName(conn, nick);
        break;
      }
      case ConnectionState.ClosedByPeer:
      case ConnectionState.ProblemDetectedLocally: {
        const nick = clients.get(conn);
        clients.delete(conn);
        if (nick !== undefined && oldState === ConnectionState.Connected) {
          const why = info.state === ConnectionState.ClosedByPeer ? 'left' : `was lost (${info.endDebug})`;
          console.log(`${nick} ${why}`);
          everyoneBut(conn, `${nick} ${why}.`);
        }
        sockets.closeConnection(conn);
        break;
      }
      default:
        break;
    }
  });
  sockets.on('messages', ({ conn }) => {
    for (const m of sockets.receiveMessagesOnConnection(conn, 256)) {
      const nick = clients.get(conn);
      if (nick === undefined) continue;
      const line = m.data.toString('utf8');
      if (line.startsWith('/nick ')) {
        const next = line.slice(6).trim();
        if (next === '') continue;
        everyoneBut(conn, `${nick} is now known as ${next}`);
        say(conn, `You are now known as ${next}`);
        clients.set(conn, next);
        sockets.setConnectionName(conn, next);
      } else {
        console.log(`${nick}: ${line}`);
        everyoneBut(conn, `${nick}: ${line}`);
      }
    }
  });
  const stop = async () => {
    for (const conn of clients.keys()) {
      say(conn, 'The server is shutting down. Goodbye.');
      sockets.closeConnection(conn, 1000, 'server shutdown', true);
    }
    await shutdown();
  };
  input.on('line', (line) => {
    if (line.trim() === '/quit') void stop();
    else console.log("the server knows one command: '/quit'");
  });
  process.once('SIGINT', () => void stop());
} else {
  const conn = sockets.connectByIPAddress(serverAddress);
  console.log(`connecting to ${serverAddress}`);
  sockets.on('connectionStatusChanged', ({ conn: c, info }) => {
    if (c !== conn) return;
    if (info.state === ConnectionState.Connected) console.log('connected');
    if (info.state === ConnectionState.ClosedByPeer || info.state === ConnectionState.ProblemDetectedLocally) {
      console.log(`connection closed: ${info.endDebug || info.endReason}`);
      sockets.closeConnection(conn);
      void shutdown(info.state === ConnectionState.ClosedByPeer ? 0 : 1);
    }
  });
  sockets.on('messages', () => {
    for (const m of sockets.receiveMessagesOnConnection(conn, 256)) console.log(m.data.toString('utf8'));
  });
  const quit = () => {
    if (stopping) return;
    sockets.closeConnection(conn, 1000, 'goodbye', true);
    void shutdown();
  };
  input.on('line', (line) => {
    if (line.trim() === '/quit') quit();
    else if (line !== '') say(conn, line);
  });
  input.on('close', quit);
  process.once('SIGINT', quit);
}
