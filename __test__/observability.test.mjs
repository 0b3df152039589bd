// Observability (issue 17): the debug log (levels, callback, rate limit, NETMESSAGES_LOG),
// endpoint counters, per-session figures, listSessions, the detailed status text and the
// Prometheus export.
import test from 'ava';
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';

import {
  DebugOutputType,
  EResult,
  SendFlags,
  getDebugOutputLevel,
  setDebugOutputFunction,
  toPrometheus,
} from '../dist/index.mjs';
import { addrOf, collect, endpoint, waitFor } from './helpers.mjs';

async function pair(t) {
  const [a, b] = await Promise.all([endpoint(), endpoint()]);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.on('sessionRequest', ({ identityRemote }) => b.acceptSessionWithUser(identityRemote));
  a.sendMessageToUser(addrOf(b), 'hello', SendFlags.Reliable, 3);
  await collect(b, 3, 1);
  return [a, b];
}

// The log is process-wide: these tests run one at a time.
test.serial('the debug log: Steam levels, one callback for every endpoint, off costs nothing', async (t) => {
  const lines = [];
  setDebugOutputFunction(DebugOutputType.Msg, (level, message) => lines.push({ level, message }));
  t.teardown(() => setDebugOutputFunction(DebugOutputType.None, null));
  t.is(getDebugOutputLevel(), DebugOutputType.Msg);
  const [a, b] = await pair(t);
  t.is(a.sendMessageToUser('ip:localhost:1', 'x'), EResult.InvalidParam);
  await waitFor(() => lines.some((l) => /connection established/.test(l.message)) && lines.some((l) => /send refused/.test(l.message)), 5000, 'log lines');
  const est = lines.find((l) => /connection established/.test(l.message));
  t.is(est.level, DebugOutputType.Msg);
  t.regex(est.message, new RegExp(`peer=ip:127\\.0\\.0\\.1:(${a.localAddress.port}|${b.localAddress.port})`));
  const refused = lines.find((l) => /send refused/.test(l.message));
  t.is(refused.level, DebugOutputType.Warning);
  t.regex(refused.message, /InvalidParam.*names a host/);
  t.false(lines.some((l) => l.level > DebugOutputType.Msg), 'nothing more detailed than the level asked for');

  // Off: nothing more arrives.
  setDebugOutputFunction(DebugOutputType.None, null);
  const before = lines.length;
  a.sendMessageToUser('ip:localhost:1', 'x');
  b.closeSessionWithUser(addrOf(a));
  await new Promise((r) => setTimeout(r, 200));
  t.is(lines.length, before);
});

test.serial('the debug log is rate-limited per kind of line, and says how many it suppressed', async (t) => {
  const lines = [];
  setDebugOutputFunction(DebugOutputType.Warning, (level, message) => lines.push(message));
  t.teardown(() => setDebugOutputFunction(DebugOutputType.None, null));
  const p = await endpoint();
  t.teardown(() => p.close());
  for (let i = 0; i < 500; i++) p.sendMessageToUser(42, 'x');
  await new Promise((r) => setTimeout(r, 300));
  const burst = lines.filter((l) => /send refused/.test(l)).length;
  t.true(burst >= 1 && burst <= 60, `${burst} lines for 500 refusals`);
  p.sendMessageToUser(42, 'x');
  await waitFor(() => lines.some((l) => /more like this suppressed/.test(l)), 3000, 'the suppressed count');
  const note = lines.find((l) => /more like this suppressed/.test(l));
  const suppressed = Number(/\((\d+) more like this suppressed\)/.exec(note)[1]);
  t.true(suppressed >= 400, note);
});

test.serial('a throwing debug callback does not stop the log', async (t) => {
  const script = `
    import { setDebugOutputFunction, DebugOutputType, NetworkingMessages } from ${JSON.stringify(new URL('../dist/index.mjs', import.meta.url).href)};
    let calls = 0, uncaught = 0;
    process.on('uncaughtException', () => uncaught++);
    setDebugOutputFunction(DebugOutputType.Warning, () => { calls++; throw new Error('boom'); });
    const p = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
    p.sendMessageToUser(1, 'x'); p.sendMessageToUser('nope', 'x');
    await new Promise((r) => setTimeout(r, 300));
    await p.close();
    console.log(JSON.stringify({ calls, uncaught }));`;
  const out = await new Promise((resolve, reject) =>
    execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000 }, (e, stdout, stderr) => (e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout))),
  );
  t.deepEqual(JSON.parse(out.trim()), { calls: 2, uncaught: 2 });
});

test('NETMESSAGES_LOG=debug prints the log to stderr', async (t) => {
  const fixture = fileURLToPath(new URL('./fixtures/open-close.mjs', import.meta.url));
  const { code, stderr } = await new Promise((resolve) =>
    execFile(process.execPath, [fixture], { env: { ...process.env, NETMESSAGES_LOG: 'debug' }, timeout: 20_000 }, (e, stdout, stderr) =>
      resolve({ code: e ? e.code : 0, stdout, stderr }),
    ),
  );
  t.is(code, 0, stderr);
  t.regex(stderr, /^netmessages\[Msg\] connection established \(conn=\d+, remote=127\.0\.0\.1:\d+, peer=ip:127\.0\.0\.1:\d+\)$/m);
  t.regex(stderr, /^netmessages\[Verbose\] /m, 'debug includes the Verbose lines');
  const bad = await new Promise((resolve) =>
    execFile(process.execPath, [fixture], { env: { ...process.env, NETMESSAGES_LOG: 'loud' }, timeout: 20_000 }, (e, stdout, stderr) => resolve(stderr)),
  );
  t.regex(bad, /NETMESSAGES_LOG=loud is not a level/);
});

test('getEndpointStats: datagrams each way, malformed input, sessions by state', async (t) => {
  const [a, b] = await pair(t);
  const junk = dgram.createSocket('udp4');
  t.teardown(() => junk.close());
  await new Promise((r) => junk.send(Buffer.from('certainly not a GNS datagram'), b.localAddress.port, '127.0.0.1', r));
  await waitFor(() => b.getEndpointStats().droppedMalformed === 1, 3000, 'the malformed datagram counted');
  const s = b.getEndpointStats();
  t.true(s.datagramsReceived >= 3 && s.datagramsSent >= 2, JSON.stringify(s));
  t.true(s.bytesReceived > s.datagramsReceived);
  t.deepEqual(s.sessionsByState, { Connected: 1 });
  t.is(s.sessions, 1);
  for (const k of ['droppedUnauthenticated', 'droppedReplayed', 'rateLimitedSource', 'rateLimitedGlobal', 'droppedReceiveQueueFull', 'messagesQueued',
    'handshakesLimitedSource', 'handshakesLimitedGlobal', 'refusedConnectLive', 'peersGoneSilent', 'refusedWrongSource', 'refusedWrongPeerId']) {
    t.is(s[k], 0, k);
  }
  // The accepting side checked the peer's connect request: one handshake's worth of work.
  t.true(s.handshakes >= 1, `handshakes ${s.handshakes}`);
  t.true(a.getEndpointStats().datagramsSent >= 3);
});

test('listSessions and the per-session figures', async (t) => {
  const [a, b] = await pair(t);
  for (let i = 0; i < 20; i++) a.sendMessageToUser(addrOf(b), Buffer.alloc(1000, i), SendFlags.Reliable, 5);
  await collect(b, 5, 20);
  const [entry, ...rest] = b.listSessions();
  t.deepEqual(rest, []);
  t.true(entry.identityRemote.equals(addrOf(a)));
  t.is(entry.state, 3);
  t.is(entry.info.remoteAddress, `127.0.0.1:${a.localAddress.port}`);
  t.true(entry.stats.accepted);
  t.true(entry.stats.packetsReceived >= 15 && entry.stats.bytesReceived > 20_000, JSON.stringify(entry.stats));
  t.is(entry.stats.unreadMessages, 0);
  t.deepEqual(entry.stats.backlog, []);
  t.is(entry.receiveBlocked, null);
  const fromA = a.getSessionConnectionInfo(addrOf(b)).stats;
  t.true(fromA.packetsSent >= 15 && fromA.packetsAcked > 0, JSON.stringify(fromA));
  t.is(fromA.packetsLost, 0);
  t.is(fromA.reliableBytesResent, 0);
  t.is(a.getSessionConnectionInfo('ip:127.0.0.1:9').stats, null);
});

test("getDetailedConnectionStatus: Steam-like text with rates, totals and the session's lines", async (t) => {
  const [a, b] = await pair(t);
  await new Promise((r) => setTimeout(r, 50));
  const text = a.getDetailedConnectionStatus(addrOf(b));
  t.regex(text, new RegExp(`^Connection #\\d+ with ip:127\\.0\\.0\\.1:${b.localAddress.port} at 127\\.0\\.0\\.1:${b.localAddress.port}: connected$`, 'm'));
  for (const re of [/^Current rates/m, /^ {4}Ping: [\d.]+ ms$/m, /^Lifetime totals:$/m, /^ {4}Sent: +\d+ pkts/m, /^Session with /m, /^ {4}accepted; idle for/m, /Channels used: 3/]) {
    t.regex(text, re);
  }
  t.is(a.getDetailedConnectionStatus('ip:127.0.0.1:9'), null);
});

test('toPrometheus: text exposition format', async (t) => {
  const [, b] = await pair(t);
  const text = toPrometheus(b.getEndpointStats(), { labels: { endpoint: 'game "1"' } });
  const lines = text.trimEnd().split('\n');
  for (const l of lines) {
    t.regex(l, /^(# (HELP|TYPE) netmessages_[a-z_]+ .+|netmessages_[a-z_]+\{[^}]*\} \d+(\.\d+)?)$/, l);
  }
  t.regex(text, /^# TYPE netmessages_datagrams_received_total counter$/m);
  t.regex(text, /^netmessages_sessions\{endpoint="game \\"1\\"",state="Connected"\} 1$/m);
  t.regex(text, /^netmessages_dropped_malformed_total\{endpoint="game \\"1\\""\} 0$/m);
  t.throws(() => toPrometheus(b.getEndpointStats(), { labels: { 'bad-name': 'x' } }), { instanceOf: TypeError });
});
