// One NetworkingSockets instance inside a test namespace, driven by the P2P session tests
// (sessions.test.mjs) over stdin/stdout, one JSON object a line: the connection API's P2P
// calls (connectP2P, createListenSocketP2P) as peer.mjs drives the messages model's.
//
//   argv[2]: { identity, privateKey, certificate, ca (hex), signaling, stunServers,
//              turnServers, config, listen (a virtual port to listen on, optional) }
//   out:     {"ready":true} once created (or {"error":...})
//            {"event":"connected","conn":N,"peer":ID,"remoteAddress":S,"flags":N}
//            {"event":"message","conn":N,"from":ID,"text":S,"reliable":B}
//            {"event":"ended","conn":N,"state":N,"endReason":N,"endDebug":S,"remoteAddress":S}
//   in:      {"id":N,"cmd":"connect","to":ID,"vport":N} -> {"id":N,"conn":N}
//            {"id":N,"cmd":"send","conn":N,"text":S,"reliable":B} -> {"id":N,"result":R}
//            {"id":N,"cmd":"info","conn":N} -> {"id":N,"info":{...}}
//            {"id":N,"cmd":"close-conn","conn":N,"reason":N,"debug":S} -> {"id":N,"ok":B}
//            {"id":N,"cmd":"close"} -> {"id":N,"closed":true}, then exit
// Every connection to the listen socket is accepted.
import { ConnectionState, NetworkingSockets, SendFlags } from '../../dist/index.mjs';
import { create, opts, out, p2pOptions, serveCommands } from './peer-harness.mjs';

const s = await create(async () => {
  const inst = await NetworkingSockets.create(p2pOptions());
  if (opts.listen !== undefined) inst.createListenSocketP2P(opts.listen);
  return inst;
});

s.on('connectionStatusChanged', ({ conn, info }) => {
  if (info.state === ConnectionState.Connecting && info.listenSocket !== 0) {
    s.acceptConnection(conn);
  } else if (info.state === ConnectionState.Connected) {
    out({ event: 'connected', conn, peer: info.identityRemote.toString(), remoteAddress: info.remoteAddress, flags: info.flags });
  } else if (info.state === ConnectionState.ClosedByPeer || info.state === ConnectionState.ProblemDetectedLocally) {
    out({ event: 'ended', conn, state: info.state, endReason: info.endReason, endDebug: info.endDebug, remoteAddress: info.remoteAddress });
  }
});
s.on('messages', ({ conn }) => {
  for (const m of s.receiveMessagesOnConnection(conn, 256)) {
    out({
      event: 'message',
      conn,
      from: m.identityPeer.toString(),
      text: Buffer.from(m.data).toString(),
      reliable: (m.sendFlags & SendFlags.Reliable) !== 0,
    });
  }
});

out({ ready: true });

serveCommands(s, (c) => {
  switch (c.cmd) {
    case 'connect':
      out({ id: c.id, conn: s.connectP2P(c.to, c.vport) });
      return true;
    case 'send': {
      const flags = c.reliable ? SendFlags.Reliable : SendFlags.Unreliable;
      out({ id: c.id, result: s.sendMessageToConnection(c.conn, c.text, flags).result });
      return true;
    }
    case 'info': {
      const i = s.getConnectionInfo(c.conn);
      const st = s.getConnectionRealTimeStatus(c.conn).status;
      out({ id: c.id, info: i === null ? null : { ...i, identityRemote: i.identityRemote.toString(), ping: st?.ping } });
      return true;
    }
    case 'close-conn':
      out({ id: c.id, ok: s.closeConnection(c.conn, c.reason ?? 0, c.debug ?? '', true) });
      return true;
    default:
      return false;
  }
});
