// One netmessages endpoint inside a test namespace, driven by the P2P session tests
// (sessions.test.mjs) over stdin/stdout, one JSON object a line.
//
//   argv[2]: { identity, privateKey, certificate, ca (hex), signaling, stunServers,
//              turnServers, config }
//   out:     {"ready":true,"candidates":[...],"notes":[...]} once created (or {"error":...})
//            {"event":"message","from":ID,"channel":N,"text":S,"reliable":B}
//            {"event":"failed","remote":ID,"endReason":N,"endDebug":S}
//   in:      {"id":N,"cmd":"send","to":ID,"text":S,"reliable":B,"channel":N} -> {"id":N,"result":R}
//            {"id":N,"cmd":"info","to":ID} -> {"id":N,"info":{...}}
//            {"id":N,"cmd":"close"} -> {"id":N,"closed":true}, then exit
// Every session request is accepted.
import { createInterface } from 'node:readline';

import { NetworkingMessages, SendFlags } from '../../dist/index.mjs';

const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const opts = JSON.parse(process.argv[2]);
const hex = (s) => Buffer.from(s, 'hex');

let ep;
try {
  ep = await NetworkingMessages.create({
    bind: '0.0.0.0:0',
    identity: opts.identity,
    privateKey: hex(opts.privateKey),
    certificate: hex(opts.certificate),
    trustedCAs: [hex(opts.ca)],
    signaling: opts.signaling,
    stunServers: opts.stunServers ?? [],
    turnServers: opts.turnServers ?? [],
    config: opts.config ?? {},
  });
} catch (e) {
  out({ error: String(e?.stack ?? e) });
  process.exit(1);
}

ep.on('sessionRequest', ({ identityRemote }) => ep.acceptSessionWithUser(identityRemote));
ep.on('messages', (channel) => {
  for (const m of ep.receiveMessagesOnChannel(channel, 256)) {
    out({
      event: 'message',
      from: m.identityPeer.toString(),
      channel,
      text: Buffer.from(m.data).toString(),
      reliable: (m.sendFlags & SendFlags.Reliable) !== 0,
    });
  }
});
ep.on('sessionFailed', ({ info }) => {
  out({ event: 'failed', remote: info.identityRemote.toString(), endReason: info.endReason, endDebug: info.endDebug, remoteAddress: info.remoteAddress });
});

// Gathering has begun; what the endpoint knows of itself helps a failure's diagnosis.
out({ ready: true });

createInterface({ input: process.stdin }).on('line', async (line) => {
  let c;
  try {
    c = JSON.parse(line);
  } catch {
    return;
  }
  try {
    switch (c.cmd) {
      case 'send': {
        const flags = (c.reliable ? SendFlags.Reliable : SendFlags.Unreliable) | SendFlags.AutoRestartBrokenSession;
        out({ id: c.id, result: ep.sendMessageToUser(c.to, c.text, flags, c.channel ?? 0) });
        break;
      }
      case 'info': {
        const i = ep.getSessionConnectionInfo(c.to);
        out({ id: c.id, info: i.info === null ? { state: i.state } : { ...i.info, identityRemote: undefined, ping: i.status?.ping } });
        break;
      }
      case 'close':
        await ep.close();
        out({ id: c.id, closed: true });
        process.exit(0);
        break;
      default:
        out({ id: c.id, error: `unknown command ${c.cmd}` });
    }
  } catch (e) {
    out({ id: c.id, error: String(e?.stack ?? e) });
  }
});
