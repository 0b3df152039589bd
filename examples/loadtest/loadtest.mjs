// `netmessages loadtest`: many client sessions send to an echo server at a fixed rate; every
// echo is timed. Prints throughput, RTT percentiles and loss, with a progress bar (plain ANSI,
// on stderr) while it runs and the results on stdout.
//
//   npx netmessages loadtest --peers 50 --rate 100 --seconds 10 [--size 64] [--reliable]
//   npx netmessages loadtest --serve 0.0.0.0:27020           # an echo server to aim at
//   npx netmessages loadtest --target host:27020 --peers 20   # clients only, against it
//
// Without --target it starts its own echo server on 127.0.0.1 (loopback only). Ctrl-C stops
// the run early and still prints the summary of what was measured.
import { NetworkingMessages, SendFlags, EResult } from 'netmessages';

export const summary = 'drive many sessions against a server; prints throughput, RTT percentiles and loss';

const HELP = `usage: netmessages loadtest [options]

  --peers N       client endpoints, one session each (default 10)
  --rate R        messages per second per peer (default 100)
  --seconds S     how long to send (default 5)
  --size B        payload bytes, at least 16 (default 64)
  --reliable      send reliable messages (default unreliable)
  --no-nagle      send at once instead of letting Nagle batch for up to nagleTime (5 ms)
  --channel C     channel to use (default 0)
  --target H:P    aim at a running echo server instead of starting one on loopback
  --serve H:P     only run an echo server on H:P until interrupted
  --json          print the results as one JSON object
  --help          this text
`;

function parse(argv) {
  const o = { peers: 10, rate: 100, seconds: 5, size: 64, reliable: false, noNagle: false, channel: 0, target: undefined, serve: undefined, json: false, help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const number = (min) => {
      const v = Number(value());
      if (!Number.isFinite(v) || v < min) throw new Error(`${flag} must be a number >= ${min}`);
      return v;
    };
    switch (flag) {
      case '--peers': o.peers = Math.floor(number(1)); break;
      case '--rate': o.rate = number(0.1); break;
      case '--seconds': o.seconds = number(0.1); break;
      case '--size': o.size = Math.floor(number(16)); break;
      case '--channel': o.channel = Math.floor(number(0)); break;
      case '--reliable': o.reliable = true; break;
      case '--no-nagle': o.noNagle = true; break;
      case '--json': o.json = true; break;
      case '--target': o.target = value(); break;
      case '--serve': o.serve = value(); break;
      case '--help': case '-h': o.help = true; break;
      default: throw new Error(`unknown option ${a}`);
    }
  }
  if (o.size > 512 * 1024) throw new Error('--size is at most 524288 (512 KiB)');
  return o;
}

/** An echo server: accepts every session and sends each message back on its channel. */
export async function echoServer(bind) {
  const server = await NetworkingMessages.create({ bind });
  server.on('sessionRequest', ({ identityRemote }) => server.acceptSessionWithUser(identityRemote));
  const echoed = new Set();
  server.on('messages', (ch) => {
    for (;;) {
      const batch = server.receiveMessagesOnChannel(ch, 1024);
      if (batch.length === 0) break;
      for (const m of batch) {
        const flags = m.sendFlags & SendFlags.Reliable ? SendFlags.ReliableNoNagle : SendFlags.UnreliableNoNagle;
        server.sendMessageToUser(m.identityPeer, m.data, flags, ch);
        echoed.add(m.identityPeer.toString());
      }
    }
  });
  return { server, peers: echoed };
}

const isLoopback = (hostPort) => /^(127\.|localhost|\[::1\])/.test(hostPort);

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

const fmt = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : `${Math.round(n)}`);
const ms = (v) => (v === null ? 'n/a' : `${v.toFixed(2)} ms`);

function bar(fraction, width = 30) {
  const full = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

export async function main(argv) {
  let o;
  try {
    o = parse(argv);
  } catch (e) {
    process.stderr.write(`netmessages loadtest: ${e.message}\n\n${HELP}`);
    return 2;
  }
  if (o.help) {
    process.stdout.write(HELP);
    return 0;
  }

  if (o.serve !== undefined) {
    const { server } = await echoServer(o.serve);
    process.stdout.write(`echo server listening on ${server.identity}\n`);
    await new Promise((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await server.close();
    return 0;
  }

  let own;
  let target = o.target;
  if (target === undefined) {
    own = await echoServer('127.0.0.1:0');
    target = `${own.server.localAddress.address}:${own.server.localAddress.port}`;
  }
  const targetId = `ip:${target}`;
  // Loopback targets from loopback; others from the default bind (every interface).
  const bind = isLoopback(target) ? '127.0.0.1:0' : undefined;
  const flags = (o.reliable ? SendFlags.Reliable : SendFlags.Unreliable) | (o.noNagle ? SendFlags.NoNagle : 0);

  const peers = [];
  for (let i = 0; i < o.peers; i++) {
    const ep = await NetworkingMessages.create(bind === undefined ? {} : { bind });
    const peer = { ep, sent: 0, received: 0 };
    ep.on('messages', (ch) => {
      if (ch !== o.channel) return;
      const now = performance.now();
      for (;;) {
        const batch = ep.receiveMessagesOnChannel(ch, 1024);
        if (batch.length === 0) break;
        for (const m of batch) {
          peer.received++;
          stats.received++;
          stats.bytes += m.size;
          stats.rtts.push(now - m.data.readDoubleLE(8));
        }
      }
    });
    peers.push(peer);
  }

  const stats = { sent: 0, received: 0, bytes: 0, sendErrors: 0, limitExceeded: 0, rtts: [] };
  const payload = Buffer.alloc(o.size, 0x5a);
  const tty = process.stderr.isTTY && !o.json;
  const started = performance.now();
  const durationMs = o.seconds * 1000;
  let lastProgress = started;
  let lastReceived = 0;

  const progress = (now, final = false) => {
    const secs = (now - lastProgress) / 1000 || 1;
    const rate = (stats.received - lastReceived) / secs;
    const recent = stats.rtts.slice(-2000).sort((a, b) => a - b);
    const line = `${bar((now - started) / durationMs)} ${((now - started) / 1000).toFixed(1).padStart(5)}s  sent ${fmt(stats.sent)}  echoed ${fmt(stats.received)}  ${fmt(rate)} msg/s  rtt p50 ${ms(percentile(recent, 0.5))}`;
    if (tty) process.stderr.write(`\r\x1b[K${line}${final ? '\n' : ''}`);
    else process.stderr.write(`${line}\n`);
    lastProgress = now;
    lastReceived = stats.received;
  };

  // Ctrl-C (or SIGTERM) ends the run early; the summary covers what was measured.
  let interrupted = false;
  let stopSending;
  const onSignal = () => {
    interrupted = true;
    stopSending?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  // Send on a 10 ms tick, spreading each peer's messages evenly over time.
  await new Promise((resolve) => {
    stopSending = () => {
      clearInterval(timer);
      resolve();
    };
    const timer = setInterval(() => {
      const now = performance.now();
      const elapsed = Math.min(now - started, durationMs);
      const due = Math.floor((elapsed / 1000) * o.rate);
      for (const p of peers) {
        while (p.sent < due) {
          payload.writeUInt32LE(p.sent, 0);
          payload.writeDoubleLE(performance.now(), 8);
          const r = p.ep.sendMessageToUser(targetId, payload, flags, o.channel);
          p.sent++;
          stats.sent++;
          if (r !== EResult.OK) {
            stats.sendErrors++;
            if (r === EResult.LimitExceeded) stats.limitExceeded++;
          }
        }
      }
      if (now - lastProgress >= (tty ? 200 : 1000)) progress(now);
      if (now - started >= durationMs) {
        clearInterval(timer);
        resolve();
      }
    }, 10);
  });
  const sendEnded = performance.now();

  // Let the last echoes land: reliable ones all should; unreliable ones get a short grace.
  const expected = stats.sent - stats.sendErrors;
  const graceEnd = performance.now() + (interrupted ? 500 : o.reliable ? 5000 : 1000);
  while (stats.received < expected && performance.now() < graceEnd) await new Promise((r) => setTimeout(r, 20));
  progress(performance.now(), true);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);

  const sorted = [...stats.rtts].sort((a, b) => a - b);
  const round = (v) => (v === null ? null : Math.round(v * 1000) / 1000);
  const windowSec = (sendEnded - started) / 1000;
  const sessions = own ? own.peers.size : peers.filter((p) => p.received > 0).length;
  const result = {
    target,
    peers: o.peers,
    rate: o.rate,
    seconds: o.seconds,
    size: o.size,
    reliable: o.reliable,
    noNagle: o.noNagle,
    interrupted,
    sentSeconds: Math.round(windowSec * 1000) / 1000,
    sessions,
    sent: stats.sent,
    sendErrors: stats.sendErrors,
    limitExceeded: stats.limitExceeded,
    received: stats.received,
    lossPercent: stats.sent ? Math.round(((stats.sent - stats.received) / stats.sent) * 100000) / 1000 : 0,
    msgsPerSec: Math.round(stats.received / windowSec),
    mbPerSec: Math.round(((stats.bytes / windowSec) / 1e6) * 1000) / 1000,
    rttMs: { p50: round(percentile(sorted, 0.5)), p90: round(percentile(sorted, 0.9)), p99: round(percentile(sorted, 0.99)), max: round(sorted.at(-1) ?? null) },
  };

  await Promise.all([...peers.map((p) => p.ep.close()), own?.server.close()]);

  if (o.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else {
    const r = result;
    process.stdout.write(
      [
        `loadtest: ${r.peers} peers x ${r.rate} msg/s x ${r.seconds} s, ${r.size} B ${r.reliable ? 'reliable' : 'unreliable'} -> ${r.target} (${r.sessions} sessions)` +
          (r.interrupted ? ` [interrupted after ${r.sentSeconds.toFixed(1)} s]` : ''),
        `  throughput  ${fmt(r.msgsPerSec)} msg/s echoed, ${r.mbPerSec} MB/s payload each way`,
        `  rtt         p50 ${ms(r.rttMs.p50)}  p90 ${ms(r.rttMs.p90)}  p99 ${ms(r.rttMs.p99)}  max ${ms(r.rttMs.max)}`,
        `  loss        ${r.lossPercent}% (sent ${r.sent}, echoed ${r.received}, send errors ${r.sendErrors})`,
        '',
      ].join('\n'),
    );
  }
  if (result.received === 0) return 1;
  if (o.reliable && result.received < result.sent - result.sendErrors) return 1;
  return 0;
}

// Run directly: `node examples/loadtest/loadtest.mjs --peers 4 ...`.
if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('loadtest.mjs')) {
  process.exitCode = await main(process.argv.slice(2));
}
