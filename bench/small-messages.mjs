// A flood of small unreliable messages between two processes on loopback, alone: the
// profiling harness behind BENCHMARKS.md's "small messages" figures. One side sends 32 B
// unreliable messages as fast as the API takes them, the other reads them; each prints its
// process CPU, so CPU per message can be compared between builds (swap the native addon
// between runs, alternating, and compare pairs from one sitting: the machine is shared).
//
//   node bench/small-messages.mjs [--api=buffer|call] [--seconds=N] [--size=BYTES]
//
// --api=buffer: sendMessagesFromBuffer (256 per call) and receiveBatchOnChannel;
// --api=call: sendMessageToUser per message and receiveMessagesOnChannel.
// Attach a profiler to a side by its title: `pgrep -f 'small-messages.mjs send'`.
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const opt = (name, dflt) => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : dflt;
};
const role = process.argv[2]?.startsWith('--') ? undefined : process.argv[2];
const api = opt('api', 'buffer');
const seconds = Number(opt('seconds', '4'));
const size = Number(opt('size', '32'));
const WARMUP_MS = 1000;
// Steam's default send rate would make this a rate-limit test.
const FAST = { sendRateMin: 1e9, sendRateMax: 1e9 };
const BATCH = 256;

if (api !== 'buffer' && api !== 'call') throw new Error(`--api=buffer or --api=call, not ${api}`);
if (!(seconds > 0) || !(size >= 1 && size <= 1024)) throw new Error('--seconds > 0, --size in 1..1024');

async function receiver() {
  const { NetworkingMessages } = require(path.join(here, '..', 'dist', 'index.js'));
  const ep = await NetworkingMessages.create({ bind: '127.0.0.1:0', config: FAST });
  ep.on('sessionRequest', (e) => ep.acceptSessionWithUser(e.identityRemote));
  let msgs = 0;
  let t0 = 0;
  let scheduled = false;
  let open = true;
  // Edge-triggered 'messages': drain in slices, yielding to the event loop between them.
  const drain = () => {
    scheduled = false;
    if (!open) return;
    for (let n = 0; n < 16; n++) {
      if (api === 'buffer') {
        const b = ep.receiveBatchOnChannel(0, BATCH);
        msgs += b.count;
        if (b.count < BATCH) return;
      } else {
        const b = ep.receiveMessagesOnChannel(0, BATCH);
        for (const m of b) {
          msgs++;
          m.release();
        }
        if (b.length < BATCH) return;
      }
    }
    if (!scheduled) {
      scheduled = true;
      setImmediate(drain);
    }
  };
  ep.on('messages', drain);
  process.send({ port: ep.localAddress.port });
  setTimeout(() => {
    msgs = 0;
    t0 = performance.now();
  }, WARMUP_MS);
  setTimeout(async () => {
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage();
    process.send({ side: 'receiver', msgsPerSec: Math.round(msgs / elapsed), cpuSeconds: (cpu.user + cpu.system) / 1e6 });
    open = false;
    await ep.close();
    process.exit(0);
  }, WARMUP_MS + seconds * 1000);
}

async function sender(port) {
  const { NetworkingMessages } = require(path.join(here, '..', 'dist', 'index.js'));
  const ep = await NetworkingMessages.create({ bind: '127.0.0.1:0', config: FAST });
  const target = `ip:127.0.0.1:${port}`;
  const big = Buffer.alloc(size * BATCH, 7);
  const offsets = Uint32Array.from({ length: BATCH + 1 }, (_, i) => i * size);
  const one = Buffer.alloc(size, 7);
  let sent = 0;
  let stopped = false;
  const pump = () => {
    if (stopped) return;
    if (api === 'buffer') {
      for (const r of ep.sendMessagesFromBuffer(target, big, offsets, 0, 0)) {
        if (r !== 1) break;
        sent++;
      }
    } else {
      for (let i = 0; i < BATCH; i++) {
        if (ep.sendMessageToUser(target, one, 0, 0) !== 1) break;
        sent++;
      }
    }
    setImmediate(pump);
  };
  pump();
  setTimeout(async () => {
    stopped = true;
    const cpu = process.cpuUsage();
    process.send({ side: 'sender', sent, cpuSeconds: (cpu.user + cpu.system) / 1e6 });
    await ep.close();
    process.exit(0);
  }, WARMUP_MS + seconds * 1000 + 200);
}

if (role === 'recv') await receiver();
else if (role === 'send') await sender(process.argv[3]);
else {
  const args = [`--api=${api}`, `--seconds=${seconds}`, `--size=${size}`];
  const out = {};
  await new Promise((resolve, reject) => {
    const r = fork(fileURLToPath(import.meta.url), ['recv', ...args]);
    r.on('error', reject);
    r.on('message', (m) => {
      if (m.port) {
        const s = fork(fileURLToPath(import.meta.url), ['send', String(m.port), ...args]);
        s.on('error', reject);
        s.on('message', (x) => (out.sender = x));
        s.on('exit', () => out.receiver && resolve());
      } else out.receiver = m;
    });
    r.on('exit', () => out.sender && resolve());
  });
  console.log(JSON.stringify({ api, size, seconds, ...out }));
}
