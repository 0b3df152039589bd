// The netmessages side of interop/throughput.mjs, in its own process (forked with IPC), so
// that each side of a pair has a process of its own as the GNS peers do.
//   { cmd: 'recv', config }                 bind, accept every session, count channel 0
//   { cmd: 'send', target, size, config }   send `size`-byte reliable messages to target, flat out
//   { cmd: 'count' }                         -> { ev: 'count', bytes, msgs, gaps }
//   { cmd: 'status', peer }                  -> { ev: 'status', status }
import { EResult, NetworkingMessages, SendFlags } from '../dist/index.mjs';

let nm;
let bytes = 0;
let msgs = 0;
let gaps = 0;
let nextSeq = 0;
let stop = false;
const reply = (m) => process.send(m);

process.on('message', async (c) => {
  if (c.cmd === 'recv') {
    nm = await NetworkingMessages.create({ bind: '127.0.0.1:0', config: c.config });
    nm.on('sessionRequest', (e) => nm.acceptSessionWithUser(e.identityRemote));
    const drain = () => {
      for (;;) {
        const batch = nm.receiveMessagesOnChannel(0, 1024);
        for (const m of batch) {
          bytes += m.size;
          msgs++;
          if (m.size >= 4) {
            const seq = m.data.readUInt32LE(0);
            if (seq !== nextSeq) gaps++;
            nextSeq = seq + 1;
          }
          m.release();
        }
        if (batch.length < 1024) break;
      }
    };
    nm.on('messages', drain);
    reply({ ev: 'ready', port: nm.localAddress.port });
  } else if (c.cmd === 'send') {
    nm = await NetworkingMessages.create({ bind: '127.0.0.1:0', config: c.config });
    const buf = Buffer.alloc(c.size, 0x5a);
    let seq = 0;
    const pump = () => {
      if (stop) return;
      for (let k = 0; k < 512; k++) {
        buf.writeUInt32LE(seq >>> 0, 0);
        const r = nm.sendMessageToUser(c.target, buf, SendFlags.Reliable, 0);
        if (r === EResult.OK) seq++;
        else if (r === EResult.LimitExceeded) return void setTimeout(pump, 1);
        else return void reply({ ev: 'error', error: `send returned ${r}` });
      }
      setImmediate(pump);
    };
    pump();
    reply({ ev: 'sending' });
  } else if (c.cmd === 'count') {
    reply({ ev: 'count', bytes, msgs, gaps });
  } else if (c.cmd === 'status') {
    reply({ ev: 'status', status: nm.getSessionConnectionInfo(c.peer).status });
  } else if (c.cmd === 'exit') {
    stop = true;
    await nm?.close();
    process.exit(0);
  }
});
reply({ ev: 'hello' });
