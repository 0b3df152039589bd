// One side of one benchmark run, in its own process (forked by bench/run.mjs).
//
//   node bench/child.mjs <role> '<json options>'
//
// Roles: tp-recv / tp-send (throughput), pp-server / pp-client (ping-pong),
// many-server / many-client (many peers). `options.impl` picks the stack:
// netmessages | netsockets (the connection API) | dgram | tcp | udx.
//
// IPC protocol (parent -> child): {type:'peer', port}, {type:'go'}, {type:'mark'},
// {type:'stop'}, {type:'report'}, {type:'exit'}.
// Child -> parent: {type:'ready', port}, {type:'mark', ...}, {type:'result', ...},
// {type:'error', error}.
//
// Every child exits on its own: a hard timeout (options.timeoutMs), parent disconnect,
// any uncaught error, or {type:'exit'}.
import dgram from 'node:dgram';
import net from 'node:net';
import { createRequire } from 'node:module';

const role = process.argv[2];
const opts = JSON.parse(process.argv[3] ?? '{}');
const HOST = '127.0.0.1';
const ER_OK = 1;
const ER_LIMIT = 25;

function send(msg) {
  if (process.connected) process.send(msg);
}
function die(code, error) {
  if (error !== undefined) send({ type: 'error', role, impl: opts.impl, error: String(error?.stack ?? error) });
  // Give the IPC message a moment to leave, then go.
  setTimeout(() => process.exit(code), 50).unref();
  setTimeout(() => process.exit(code), 200);
}
const hard = setTimeout(() => die(3, `hard timeout after ${opts.timeoutMs} ms`), opts.timeoutMs ?? 30000);
hard.unref();
process.on('disconnect', () => process.exit(0));
process.on('uncaughtException', (e) => die(2, e));
process.on('unhandledRejection', (e) => die(2, e));

let netmessages; // lazily imported so dgram/tcp/udx children never load the addon
async function nm() {
  // Retry briefly: in a working tree, `npm run build:ts` empties dist/ for a moment.
  for (let i = 0; netmessages === undefined; i++) {
    try {
      netmessages = await import('../dist/index.mjs');
    } catch (e) {
      if (e?.code !== 'ERR_MODULE_NOT_FOUND' || i >= 20) throw e;
      await sleep(250);
    }
  }
  return netmessages;
}
let UDX;
function udxLib() {
  if (UDX === undefined) UDX = createRequire(import.meta.url)('udx-native');
  return UDX;
}

const now = () => Number(process.hrtime.bigint()) / 1e6; // ms, monotonic
const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function cpuMs() {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
}

const handlers = {}; // message type -> fn
process.on('message', (m) => {
  if (m?.type === 'exit') {
    send({ type: 'bye' });
    setTimeout(() => process.exit(0), 20);
    return;
  }
  const h = handlers[m?.type];
  if (h) Promise.resolve(h(m)).catch((e) => die(2, e));
});

// ---------------------------------------------------------------- throughput receiver
async function tpRecv() {
  const c = { msgs: 0, bytes: 0, seqGaps: 0, seqReorders: 0, nextSeq: 0 };
  const checkSeq = opts.checkSeq === true;
  let port;
  let connectPeer = () => {};
  let closeAll = async () => {};

  if (opts.impl === 'netmessages') {
    const { NetworkingMessages } = await nm();
    const ep = await NetworkingMessages.create({ bind: `${HOST}:0`, config: opts.config });
    ep.on('sessionRequest', (e) => ep.acceptSessionWithUser(e.identityRemote));
    // The 'messages' event is edge-triggered: drain until empty, but in slices, yielding to
    // the event loop between them so a flood cannot starve timers and IPC.
    let scheduled = false;
    const drain = () => {
      scheduled = false;
      for (let n = 0; ; n++) {
        if (n === 16) {
          if (!scheduled) setImmediate(drain);
          scheduled = true;
          break;
        }
        if (opts.bufferApi) {
          // The batch receive API: one MessageBatch, no object per message.
          const batch = ep.receiveBatchOnChannel(0, 256);
          for (let i = 0; i < batch.count; i++) {
            const size = batch.size(i);
            c.msgs++;
            c.bytes += size;
            if (checkSeq && size >= 4) {
              const s = batch.data.readUInt32LE(batch.offset(i));
              if (s > c.nextSeq) c.seqGaps += s - c.nextSeq;
              else if (s < c.nextSeq) c.seqReorders++;
              c.nextSeq = Math.max(c.nextSeq, s + 1);
            }
          }
          if (batch.count < 256) break;
          continue;
        }
        const batch = ep.receiveMessagesOnChannel(0, 256);
        for (const m of batch) {
          c.msgs++;
          c.bytes += m.size;
          if (checkSeq && m.size >= 4) {
            const s = m.data.readUInt32LE(0);
            if (s > c.nextSeq) c.seqGaps += s - c.nextSeq;
            else if (s < c.nextSeq) c.seqReorders++;
            c.nextSeq = Math.max(c.nextSeq, s + 1);
          }
          m.release();
        }
        if (batch.length < 256) break;
      }
    };
    ep.on('messages', drain);
    port = ep.localAddress.port;
    closeAll = () => ep.close();
  } else if (opts.impl === 'netsockets') {
    // The connection API: a listen socket, accepting the sender's connection.
    const { NetworkingSockets, ConnectionState } = await nm();
    const s = await NetworkingSockets.create({ config: opts.config });
    const listen = s.createListenSocketIP(`${HOST}:0`);
    s.on('connectionStatusChanged', (e) => {
      if (e.info.state === ConnectionState.Connecting) s.acceptConnection(e.conn);
    });
    let scheduled = false;
    const drain = (conn) => {
      scheduled = false;
      for (let n = 0; ; n++) {
        if (n === 16) {
          if (!scheduled) setImmediate(() => drain(conn));
          scheduled = true;
          break;
        }
        const batch = s.receiveMessagesOnConnection(conn, 256);
        for (const m of batch) {
          c.msgs++;
          c.bytes += m.size;
          if (checkSeq && m.size >= 4) {
            const q = m.data.readUInt32LE(0);
            if (q > c.nextSeq) c.seqGaps += q - c.nextSeq;
            else if (q < c.nextSeq) c.seqReorders++;
            c.nextSeq = Math.max(c.nextSeq, q + 1);
          }
          m.release();
        }
        if (batch.length < 256) break;
      }
    };
    s.on('messages', (e) => drain(e.conn));
    port = s.getListenSocketAddress(listen).port;
    closeAll = () => s.close();
  } else if (opts.impl === 'dgram') {
    const s = dgram.createSocket('udp4');
    s.on('message', (m) => {
      c.msgs++;
      c.bytes += m.length;
    });
    await new Promise((r) => s.bind(0, HOST, r));
    port = s.address().port;
    closeAll = () => new Promise((r) => s.close(r));
  } else if (opts.impl === 'tcp') {
    const sockets = [];
    const server = net.createServer((sock) => {
      sockets.push(sock);
      sock.on('data', (d) => {
        c.bytes += d.length;
        c.msgs = Math.floor(c.bytes / opts.size);
      });
      sock.on('error', () => {});
    });
    await new Promise((r) => server.listen(0, HOST, r));
    port = server.address().port;
    closeAll = async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    };
  } else if (opts.impl === 'udx') {
    const UDXc = udxLib();
    const u = new UDXc();
    const sock = u.createSocket();
    sock.bind(0, HOST);
    port = sock.address().port;
    const stream = u.createStream(2);
    stream.on('error', () => {});
    if (opts.mode === 'message') {
      stream.on('message', (m) => {
        c.msgs++;
        c.bytes += m.length;
      });
    } else {
      stream.on('data', (d) => {
        c.bytes += d.length;
        c.msgs = Math.floor(c.bytes / opts.size);
      });
    }
    connectPeer = (peerPort) => stream.connect(sock, 1, peerPort, HOST);
    closeAll = async () => {
      stream.destroy();
      await sock.close();
    };
  } else throw new Error(`unknown impl ${opts.impl}`);

  let markAt;
  handlers.peer = (m) => {
    connectPeer(m.port);
    send({ type: 'peered' });
  };
  handlers.mark = () => {
    const snap = { t: now(), msgs: c.msgs, bytes: c.bytes, cpu: cpuMs() };
    if (markAt === undefined) {
      markAt = snap;
      send({ type: 'mark' });
      return;
    }
    const dt = snap.t - markAt.t;
    send({
      type: 'mark',
      windowMs: dt,
      msgs: snap.msgs - markAt.msgs,
      bytes: snap.bytes - markAt.bytes,
      msgsPerSec: ((snap.msgs - markAt.msgs) * 1000) / dt,
      mbPerSec: (snap.bytes - markAt.bytes) / 1e6 / (dt / 1000),
      cpuPercent: ((snap.cpu - markAt.cpu) / dt) * 100,
    });
  };
  handlers.report = async () => {
    const r = { type: 'result', totalMsgs: c.msgs, totalBytes: c.bytes };
    if (checkSeq) Object.assign(r, { seqGaps: c.seqGaps, seqReorders: c.seqReorders });
    await closeAll();
    send(r);
  };
  send({ type: 'ready', port });
}

// ---------------------------------------------------------------- throughput sender
async function tpSend() {
  const size = opts.size;
  const st = { sent: 0, backpressure: 0, otherResults: {}, firstResult: null };
  let stopped = false;
  let port;
  let connectPeer = () => {};
  let go;
  let closeAll = async () => {};
  let statusNow = () => undefined;

  if (opts.impl === 'netmessages') {
    const { NetworkingMessages, Identity } = await nm();
    const ep = await NetworkingMessages.create({ bind: `${HOST}:0`, config: opts.config });
    port = ep.localAddress.port;
    let target;
    connectPeer = (p) => {
      target = Identity.parse(`ip:${HOST}:${p}`);
    };
    // The session's own figures at the end (what the transport reports; shape may change).
    statusNow = () => {
      try {
        const info = ep.getSessionConnectionInfo(target);
        return { state: info.state, ...(info.status ?? {}) };
      } catch (e) {
        return { error: String(e.message ?? e) };
      }
    };
    const buf = Buffer.alloc(size, 7);
    const flags = opts.flags;
    // Batch mode: 256 messages per sendMessages call, each with its own buffer (the
    // sequence number differs); the results are read in order, and the first refusal ends
    // the batch's count (the rest of it, to the same session, is refused too).
    // Counts one send result; false when the sender should stop this round.
    const tally = (r) => {
      if (st.firstResult === null) st.firstResult = r;
      if (r === ER_OK) {
        st.sent++;
        return true;
      }
      if (r === ER_LIMIT) st.backpressure++;
      else st.otherResults[r] = (st.otherResults[r] ?? 0) + 1;
      return false;
    };
    const batch = Array.from({ length: 256 }, () => ({ identityRemote: undefined, data: Buffer.alloc(size, 7), sendFlags: flags, channel: 0 }));
    const pumpBatch = () => {
      if (stopped) return;
      for (let i = 0; i < batch.length; i++) {
        batch[i].identityRemote = target;
        batch[i].data.writeUInt32LE((st.sent + i) >>> 0, 0);
      }
      for (const r of ep.sendMessages(batch)) if (!tally(r)) break;
      setImmediate(pumpBatch);
    };
    // Buffer mode: 256 messages in one buffer plus offsets (sendMessagesFromBuffer).
    const BUF_N = 256;
    const big = Buffer.alloc(size * BUF_N, 7);
    const offsets = Uint32Array.from({ length: BUF_N + 1 }, (_, i) => i * size);
    const pumpBuffer = () => {
      if (stopped) return;
      for (let i = 0; i < BUF_N; i++) big.writeUInt32LE((st.sent + i) >>> 0, i * size);
      for (const r of ep.sendMessagesFromBuffer(target, big, offsets, flags, 0)) if (!tally(r)) break;
      setImmediate(pumpBuffer);
    };
    go = () => {
      if (opts.bufferApi) return pumpBuffer();
      if (opts.batch) return pumpBatch();
      const pump = () => {
        if (stopped) return;
        for (let i = 0; i < 256; i++) {
          buf.writeUInt32LE(st.sent >>> 0, 0);
          if (!tally(ep.sendMessageToUser(target, buf, flags, 0))) break;
        }
        setImmediate(pump);
      };
      pump();
    };
    closeAll = () => ep.close();
  } else if (opts.impl === 'netsockets') {
    const { NetworkingSockets, ConnectionState } = await nm();
    const s = await NetworkingSockets.create({ config: opts.config });
    let conn = 0;
    let connected;
    const up = new Promise((r) => (connected = r));
    s.on('connectionStatusChanged', (e) => {
      if (e.conn === conn && e.info.state === ConnectionState.Connected) connected();
    });
    connectPeer = async (p) => {
      conn = s.connectByIPAddress(`${HOST}:${p}`);
      await up;
    };
    statusNow = () => {
      const r = s.getConnectionRealTimeStatus(conn);
      return r.status ?? { result: r.result };
    };
    const tally = (r) => {
      if (st.firstResult === null) st.firstResult = r;
      if (r === ER_OK) {
        st.sent++;
        return true;
      }
      if (r === ER_LIMIT) st.backpressure++;
      else st.otherResults[r] = (st.otherResults[r] ?? 0) + 1;
      return false;
    };
    const buf = Buffer.alloc(size, 7);
    const flags = opts.flags;
    const batch = Array.from({ length: 256 }, () => ({ conn: 0, data: Buffer.alloc(size, 7), sendFlags: flags, lane: 0 }));
    go = () => {
      const pump = () => {
        if (stopped) return;
        if (opts.batch) {
          for (let i = 0; i < batch.length; i++) {
            batch[i].conn = conn;
            batch[i].data.writeUInt32LE((st.sent + i) >>> 0, 0);
          }
          for (const r of s.sendMessages(batch)) if (!tally(r.result)) break;
        } else {
          for (let i = 0; i < 256; i++) {
            buf.writeUInt32LE(st.sent >>> 0, 0);
            if (!tally(s.sendMessageToConnection(conn, buf, flags, 0).result)) break;
          }
        }
        setImmediate(pump);
      };
      pump();
    };
    port = 0;
    closeAll = () => s.close();
  } else if (opts.impl === 'dgram') {
    const s = dgram.createSocket('udp4');
    await new Promise((r) => s.bind(0, HOST, r));
    port = s.address().port;
    connectPeer = (p) => new Promise((r) => s.connect(p, HOST, r));
    const buf = Buffer.alloc(size, 7);
    const MAX_INFLIGHT = 512;
    let inflight = 0;
    let waiting = false;
    const done = (err) => {
      inflight--;
      if (err) st.otherResults[err.code] = (st.otherResults[err.code] ?? 0) + 1;
      else st.sent++;
      if (waiting && inflight < MAX_INFLIGHT / 2) {
        waiting = false;
        setImmediate(pump);
      }
    };
    const pump = () => {
      if (stopped) return;
      for (let i = 0; i < 256; i++) {
        if (inflight >= MAX_INFLIGHT) {
          st.backpressure++;
          waiting = true;
          return;
        }
        inflight++;
        s.send(buf, done);
      }
      setImmediate(pump);
    };
    go = pump;
    closeAll = () => new Promise((r) => s.close(r));
  } else if (opts.impl === 'tcp' || (opts.impl === 'udx' && opts.mode !== 'message')) {
    // Byte stream: write `size`-byte chunks, wait for 'drain' when write() says so.
    let stream;
    if (opts.impl === 'tcp') {
      port = 0;
      connectPeer = (p) =>
        new Promise((resolve, reject) => {
          stream = net.connect(p, HOST, resolve);
          stream.once('error', reject);
        });
    } else {
      const UDXc = udxLib();
      const u = new UDXc();
      const sock = u.createSocket();
      sock.bind(0, HOST);
      port = sock.address().port;
      stream = u.createStream(1);
      connectPeer = (p) => stream.connect(sock, 2, p, HOST);
      closeAll = async () => {
        stream.destroy();
        await sock.close();
      };
    }
    const buf = Buffer.alloc(size, 7);
    go = () => {
      stream.on('error', () => {});
      const pump = () => {
        if (stopped) return;
        for (let i = 0; i < 64; i++) {
          st.sent++;
          if (!stream.write(buf)) {
            st.backpressure++;
            stream.once('drain', pump);
            return;
          }
        }
        setImmediate(pump);
      };
      pump();
    };
    if (opts.impl === 'tcp') closeAll = async () => stream?.destroy();
  } else if (opts.impl === 'udx') {
    // UDX stream messages: unreliable datagrams carried on a connected stream.
    const UDXc = udxLib();
    const u = new UDXc();
    const sock = u.createSocket();
    sock.bind(0, HOST);
    port = sock.address().port;
    const stream = u.createStream(1);
    stream.on('error', () => {});
    connectPeer = (p) => stream.connect(sock, 2, p, HOST);
    const buf = Buffer.alloc(size, 7);
    const MAX_INFLIGHT = 512;
    let inflight = 0;
    let waiting = false;
    const done = () => {
      inflight--;
      st.sent++;
      if (waiting && inflight < MAX_INFLIGHT / 2) {
        waiting = false;
        setImmediate(pump);
      }
    };
    const pump = () => {
      if (stopped) return;
      for (let i = 0; i < 256; i++) {
        if (inflight >= MAX_INFLIGHT) {
          st.backpressure++;
          waiting = true;
          return;
        }
        inflight++;
        stream.send(buf).then(done);
      }
      setImmediate(pump);
    };
    go = pump;
    closeAll = async () => {
      stream.destroy();
      await sock.close();
    };
  } else throw new Error(`unknown impl ${opts.impl}`);

  handlers.peer = async (m) => {
    await connectPeer(m.port);
    send({ type: 'peered' });
  };
  handlers.go = () => go();
  handlers.stop = async () => {
    stopped = true;
    const r = { type: 'result', ...st, sessionStatus: statusNow() };
    // Let what is queued leave before reporting (bounded by close()'s own linger).
    await sleep(50);
    await Promise.race([closeAll(), sleep(2500)]);
    send(r);
  };
  send({ type: 'ready', port });
}

// ---------------------------------------------------------------- ping-pong
async function ppServer() {
  let port;
  let closeAll = async () => {};
  if (opts.impl === 'netmessages') {
    const { NetworkingMessages, SendFlags } = await nm();
    const ep = await NetworkingMessages.create({ bind: `${HOST}:0` });
    ep.on('sessionRequest', (e) => ep.acceptSessionWithUser(e.identityRemote));
    ep.on('messages', (ch) => {
      for (;;) {
        const batch = ep.receiveMessagesOnChannel(ch, 64);
        for (const m of batch) ep.sendMessageToUser(m.identityPeer, m.data, SendFlags.ReliableNoNagle, ch);
        if (batch.length < 64) break;
      }
    });
    port = ep.localAddress.port;
    closeAll = () => ep.close();
  } else if (opts.impl === 'netsockets') {
    const { NetworkingSockets, SendFlags, ConnectionState } = await nm();
    const s = await NetworkingSockets.create();
    const listen = s.createListenSocketIP(`${HOST}:0`);
    s.on('connectionStatusChanged', (e) => {
      if (e.info.state === ConnectionState.Connecting) s.acceptConnection(e.conn);
    });
    s.on('messages', ({ conn }) => {
      for (;;) {
        const batch = s.receiveMessagesOnConnection(conn, 64);
        for (const m of batch) s.sendMessageToConnection(conn, m.data, SendFlags.ReliableNoNagle, 0);
        if (batch.length < 64) break;
      }
    });
    port = s.getListenSocketAddress(listen).port;
    closeAll = () => s.close();
  } else if (opts.impl === 'dgram') {
    const s = dgram.createSocket('udp4');
    s.on('message', (m, rinfo) => s.send(m, rinfo.port, rinfo.address));
    await new Promise((r) => s.bind(0, HOST, r));
    port = s.address().port;
    closeAll = () => new Promise((r) => s.close(r));
  } else if (opts.impl === 'tcp') {
    const sockets = [];
    const server = net.createServer((sock) => {
      sockets.push(sock);
      sock.setNoDelay(true);
      sock.on('data', (d) => sock.write(d));
      sock.on('error', () => {});
    });
    await new Promise((r) => server.listen(0, HOST, r));
    port = server.address().port;
    closeAll = async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    };
  } else throw new Error(`unknown impl ${opts.impl}`);
  handlers.report = async () => {
    await closeAll();
    send({ type: 'result' });
  };
  send({ type: 'ready', port });
}

async function ppClient() {
  const size = opts.size;
  let ping; // (buf) => void
  let onReply; // set per round trip
  let closeAll = async () => {};
  let connectPeer;
  if (opts.impl === 'netmessages') {
    const { NetworkingMessages, SendFlags, Identity } = await nm();
    const ep = await NetworkingMessages.create({ bind: `${HOST}:0` });
    let target;
    connectPeer = (p) => {
      target = Identity.parse(`ip:${HOST}:${p}`);
    };
    ep.on('messages', (ch) => {
      for (;;) {
        const batch = ep.receiveMessagesOnChannel(ch, 64);
        for (const m of batch) onReply?.(m.data);
        if (batch.length < 64) break;
      }
    });
    ping = (buf) => {
      const r = ep.sendMessageToUser(target, buf, SendFlags.ReliableNoNagle, 0);
      if (r !== ER_OK) throw new Error(`sendMessageToUser returned ${r}`);
    };
    closeAll = () => ep.close();
  } else if (opts.impl === 'netsockets') {
    const { NetworkingSockets, SendFlags, ConnectionState } = await nm();
    const s = await NetworkingSockets.create();
    let conn = 0;
    connectPeer = (p) =>
      new Promise((resolve) => {
        s.on('connectionStatusChanged', (e) => {
          if (e.conn === conn && e.info.state === ConnectionState.Connected) resolve();
        });
        conn = s.connectByIPAddress(`${HOST}:${p}`);
      });
    s.on('messages', ({ conn: c }) => {
      for (;;) {
        const batch = s.receiveMessagesOnConnection(c, 64);
        for (const m of batch) onReply?.(m.data);
        if (batch.length < 64) break;
      }
    });
    ping = (buf) => {
      const r = s.sendMessageToConnection(conn, buf, SendFlags.ReliableNoNagle, 0);
      if (r.result !== ER_OK) throw new Error(`sendMessageToConnection returned ${r.result}`);
    };
    closeAll = () => s.close();
  } else if (opts.impl === 'dgram') {
    const s = dgram.createSocket('udp4');
    await new Promise((r) => s.bind(0, HOST, r));
    s.on('message', (m) => onReply?.(m));
    connectPeer = (p) => new Promise((r) => s.connect(p, HOST, r));
    ping = (buf) => s.send(buf);
    closeAll = () => new Promise((r) => s.close(r));
  } else if (opts.impl === 'tcp') {
    let sock;
    let pending = Buffer.alloc(0);
    connectPeer = (p) =>
      new Promise((resolve, reject) => {
        sock = net.connect(p, HOST, resolve);
        sock.once('error', reject);
        sock.setNoDelay(true);
        sock.on('data', (d) => {
          pending = pending.length ? Buffer.concat([pending, d]) : d;
          while (pending.length >= size) {
            const msg = pending.subarray(0, size);
            pending = pending.subarray(size);
            onReply?.(msg);
          }
        });
      });
    ping = (buf) => sock.write(Buffer.from(buf));
    closeAll = async () => sock?.destroy();
  } else throw new Error(`unknown impl ${opts.impl}`);

  handlers.peer = async (m) => {
    await connectPeer(m.port);
    send({ type: 'peered' });
  };
  handlers.go = async () => {
    const buf = Buffer.alloc(size, 1);
    const samples = [];
    let lost = 0;
    let seq = 0;
    const start = now();
    const measureFrom = start + opts.warmupMs;
    const end = measureFrom + opts.windowMs;
    while (now() < end) {
      seq++;
      buf.writeUInt32LE(seq, 0);
      const mySeq = seq;
      const t0 = process.hrtime.bigint();
      const got = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), opts.pingTimeoutMs ?? 1000);
        onReply = (d) => {
          if (d.length >= 4 && d.readUInt32LE(0) === mySeq) {
            clearTimeout(timer);
            resolve(true);
          }
        };
        ping(buf);
      });
      const rttUs = Number(process.hrtime.bigint() - t0) / 1000;
      onReply = undefined;
      if (now() < measureFrom) continue;
      if (got) samples.push(rttUs);
      else lost++;
    }
    await Promise.race([closeAll(), sleep(2500)]);
    samples.sort((a, b) => a - b);
    const q = (p) => (samples.length ? samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] : 0);
    send({
      type: 'result',
      roundTrips: samples.length,
      lost,
      p50Us: q(0.5),
      p99Us: q(0.99),
      p999Us: q(0.999),
      meanUs: samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length),
      maxUs: samples.length ? samples[samples.length - 1] : 0,
    });
  };
  send({ type: 'ready', port: 0 });
}

// ---------------------------------------------------------------- many peers
async function manyServer() {
  const c = { msgs: 0, sessions: 0 };
  let port;
  let closeAll = async () => {};
  const gc = globalThis.gc ?? (() => {});
  if (opts.impl === 'netmessages') {
    const { NetworkingMessages } = await nm();
    // `driverThreads`: bench/driver-threads.mjs compares 1 and 2 on one port.
    const ep = await NetworkingMessages.create({ bind: `${HOST}:0`, driverThreads: opts.driverThreads ?? 1 });
    ep.on('sessionRequest', (e) => {
      if (ep.acceptSessionWithUser(e.identityRemote)) c.sessions++;
    });
    let scheduled = false;
    const drain = () => {
      scheduled = false;
      for (let n = 0; ; n++) {
        if (n === 16) {
          if (!scheduled) setImmediate(drain);
          scheduled = true;
          break;
        }
        const batch = ep.receiveMessagesOnChannel(0, 256);
        c.msgs += batch.length;
        for (const m of batch) m.release();
        if (batch.length < 256) break;
      }
    };
    ep.on('messages', drain);
    port = ep.localAddress.port;
    closeAll = () => ep.close();
  } else if (opts.impl === 'dgram') {
    // Baseline: one socket, one small record per peer (the least "session" state there is).
    const peers = new Map();
    const s = dgram.createSocket('udp4');
    s.on('message', (m, rinfo) => {
      c.msgs++;
      const key = `${rinfo.address}:${rinfo.port}`;
      const p = peers.get(key);
      if (p === undefined) {
        peers.set(key, { msgs: 1, bytes: m.length, last: Date.now() });
        c.sessions++;
      } else {
        p.msgs++;
        p.bytes += m.length;
        p.last = Date.now();
      }
    });
    await new Promise((r) => s.bind(0, HOST, r));
    port = s.address().port;
    closeAll = () => new Promise((r) => s.close(r));
  } else throw new Error(`unknown impl ${opts.impl}`);

  gc();
  await sleep(100);
  gc();
  const rss0 = process.memoryUsage().rss;
  let markAt;
  handlers.mark = () => {
    const snap = { t: now(), msgs: c.msgs, cpu: cpuMs() };
    if (markAt === undefined) {
      markAt = snap;
      send({ type: 'mark', sessions: c.sessions });
      return;
    }
    const dt = snap.t - markAt.t;
    gc();
    const rss1 = process.memoryUsage().rss;
    send({
      type: 'mark',
      windowMs: dt,
      sessions: c.sessions,
      msgs: snap.msgs - markAt.msgs,
      msgsPerSec: ((snap.msgs - markAt.msgs) * 1000) / dt,
      cpuPercent: ((snap.cpu - markAt.cpu) / dt) * 100,
      rssBefore: rss0,
      rssAfter: rss1,
      rssPerSessionBytes: c.sessions ? (rss1 - rss0) / c.sessions : 0,
    });
  };
  // The idle phase: every peer has said hello and gone quiet.
  let idleAt;
  handlers['idle-start'] = () => {
    idleAt = { t: now(), cpu: cpuMs() };
    send({ type: 'idle-start', sessions: c.sessions });
  };
  handlers['idle-mark'] = () => {
    const dt = now() - idleAt.t;
    const cpu = cpuMs() - idleAt.cpu;
    gc();
    const rss1 = process.memoryUsage().rss;
    send({
      type: 'idle-mark',
      sessions: c.sessions,
      cpuPercent: (cpu / dt) * 100,
      rssAfter: rss1,
      rssPerSessionBytes: c.sessions ? (rss1 - rss0) / c.sessions : 0,
    });
  };
  handlers.report = async () => {
    await Promise.race([closeAll(), sleep(2500)]);
    send({ type: 'result', totalMsgs: c.msgs });
  };
  send({ type: 'ready', port });
}

/** many-client through the Rust load generator: its stdin/stdout speak this file's IPC steps. */
async function manyClientLoadgen() {
  const { spawn } = await import('node:child_process');
  const args = ['--control', '--sessions', String(opts.count), '--rate', String(opts.rate), '--size', String(opts.size)];
  if (opts.impl === 'dgram') args.push('--raw');
  else if (opts.impl !== 'netmessages') throw new Error(`the load generator drives netmessages or dgram, not ${opts.impl}`);
  const lg = spawn(opts.loadgen, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  lg.on('error', (e) => die(2, `cannot run ${opts.loadgen}: ${e.message}`));
  // It is our child: it goes when we go, however we go.
  process.on('exit', () => lg.kill('SIGKILL'));
  lg.on('exit', (code) => {
    if (code !== 0 && code !== null) die(2, `the load generator exited with ${code}`);
  });
  const replies = [];
  const waiting = [];
  let buf = '';
  lg.stdout.setEncoding('utf8');
  lg.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const m = JSON.parse(line);
      const w = waiting.findIndex((x) => x.type === m.type);
      if (w >= 0) waiting.splice(w, 1)[0].resolve(m);
      else replies.push(m);
    }
  });
  const next = (type) =>
    new Promise((resolve) => {
      const i = replies.findIndex((r) => r.type === type);
      if (i >= 0) resolve(replies.splice(i, 1)[0]);
      else waiting.push({ type, resolve });
    });
  const command = (line) => lg.stdin.write(`${line}\n`);
  await next('ready');
  handlers.peer = async (m) => {
    command(`target ${HOST}:${m.port}`);
    await next('peered');
    send({ type: 'peered' });
  };
  handlers.hello = async () => {
    command('hello');
    await next('helloed');
    send({ type: 'helloed' });
  };
  handlers.go = () => command('go');
  handlers.stop = async () => {
    command('stop');
    const r = await next('result');
    send({ ...r, type: 'result', otherResults: {} });
  };
  send({ type: 'ready', port: 0, count: opts.count });
}

async function manyClient() {
  if (opts.loadgen) return manyClientLoadgen();
  const count = opts.count;
  const st = { sent: 0, backpressure: 0, otherResults: {} };
  const sends = [];
  let closers = [];
  let target;
  let setTarget;
  const buf = Buffer.alloc(opts.size, 3);
  if (opts.impl === 'netmessages') {
    const { NetworkingMessages, SendFlags, Identity } = await nm();
    setTarget = (p) => {
      target = Identity.parse(`ip:${HOST}:${p}`);
    };
    for (let i = 0; i < count; i++) {
      const ep = await NetworkingMessages.create({ bind: `${HOST}:0` });
      sends.push(() => {
        const r = ep.sendMessageToUser(target, buf, SendFlags.Unreliable, 0);
        if (r === ER_OK) st.sent++;
        else if (r === ER_LIMIT) st.backpressure++;
        else st.otherResults[r] = (st.otherResults[r] ?? 0) + 1;
      });
      closers.push(() => ep.close());
    }
  } else if (opts.impl === 'dgram') {
    let portNum;
    setTarget = (p) => {
      portNum = p;
    };
    for (let i = 0; i < count; i++) {
      const s = dgram.createSocket('udp4');
      await new Promise((r) => s.bind(0, HOST, r));
      sends.push(() => {
        s.send(buf, portNum, HOST);
        st.sent++;
      });
      closers.push(() => new Promise((r) => s.close(r)));
    }
  } else throw new Error(`unknown impl ${opts.impl}`);

  let timer;
  handlers.peer = (m) => {
    setTarget(m.port);
    send({ type: 'peered' });
  };
  // One message from every peer (opening each session), then quiet.
  handlers.hello = async () => {
    for (let i = 0; i < sends.length; i++) {
      sends[i]();
      if (i % 200 === 199) await sleep(20);
    }
    send({ type: 'helloed' });
  };
  handlers.go = () => {
    // Each endpoint sends `rate` msgs/s: SLICES timer ticks per period, each tick one slice.
    const SLICES = 10;
    const periodMs = 1000 / opts.rate;
    let slice = 0;
    st.goAt = now();
    timer = setInterval(() => {
      for (let i = slice; i < sends.length; i += SLICES) sends[i]();
      slice = (slice + 1) % SLICES;
    }, periodMs / SLICES);
  };
  handlers.stop = async () => {
    clearInterval(timer);
    st.sendingMs = now() - st.goAt;
    await sleep(50);
    const r = { type: 'result', ...st };
    await Promise.race([Promise.all(closers.map((f) => f())), sleep(3000)]);
    closers = [];
    send(r);
  };
  send({ type: 'ready', port: 0, count });
}

const roles = {
  'tp-recv': tpRecv,
  'tp-send': tpSend,
  'pp-server': ppServer,
  'pp-client': ppClient,
  'many-server': manyServer,
  'many-client': manyClient,
};
if (!roles[role]) die(2, `unknown role ${role}`);
else roles[role]().catch((e) => die(2, e));
