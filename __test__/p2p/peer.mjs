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
//            {"id":N,"cmd":"flood","to":ID,"bytes":N,"size":N} -> {"id":N,"queued":N} (reliable
//              messages on channel 9, waiting while the send buffer is full)
//            {"id":N,"cmd":"flood-stats"} -> {"id":N,"bytes":N,"firstAt":ms,"lastAt":ms} (received)
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
    bind: opts.bind, // default: the library's (dual-stack [::]:0 where the OS allows it)
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
// Channel 9 is the flood's: counted, not reported.
const FLOOD = 9;
const flood = { bytes: 0, firstAt: 0, lastAt: 0 };
ep.on('messages', (channel) => {
  if (channel === FLOOD) {
    for (;;) {
      const batch = ep.receiveMessagesOnChannel(FLOOD, 1024);
      if (batch.length === 0) break;
      const now = Date.now();
      if (flood.firstAt === 0) flood.firstAt = now;
      flood.lastAt = now;
      for (const m of batch) flood.bytes += m.size;
    }
    return;
  }
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
      case 'flood': {
        const data = Buffer.alloc(c.size, 0x5a);
        let queued = 0;
        while (queued < c.bytes) {
          const r = ep.sendMessageToUser(c.to, data, SendFlags.Reliable, FLOOD);
          if (r === 1) queued += c.size;
          else if (r === 25) await new Promise((res) => setTimeout(res, 2)); // LimitExceeded: buffer full
          else throw new Error(`flood: send gave ${r}`);
        }
        out({ id: c.id, queued });
        break;
      }
      case 'flood-stats':
        out({ id: c.id, ...flood });
        break;
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
