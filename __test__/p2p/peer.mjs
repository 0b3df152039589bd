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
import { NetworkingMessages, SendFlags } from '../../dist/index.mjs';
import { create, opts, out, p2pOptions, serveCommands } from './peer-harness.mjs';

const ep = await create(() =>
  NetworkingMessages.create({
    bind: opts.bind, // default: the library's (dual-stack [::]:0 where the OS allows it)
    ...p2pOptions(),
  }),
);

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

serveCommands(ep, async (c) => {
  switch (c.cmd) {
    case 'send': {
      const flags = (c.reliable ? SendFlags.Reliable : SendFlags.Unreliable) | SendFlags.AutoRestartBrokenSession;
      out({ id: c.id, result: ep.sendMessageToUser(c.to, c.text, flags, c.channel ?? 0) });
      return true;
    }
    case 'info': {
      const i = ep.getSessionConnectionInfo(c.to);
      out({ id: c.id, info: i.info === null ? { state: i.state } : { ...i.info, identityRemote: undefined, ping: i.status?.ping } });
      return true;
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
      return true;
    }
    case 'flood-stats':
      out({ id: c.id, ...flood });
      return true;
    default:
      return false;
  }
});
