// Process faults over real loopback: a peer process is killed with SIGKILL in the middle of a
// transfer (both ways), and a new one starts on the same port. The survivor must end the old
// session with a reason — within timeoutConnected when nobody comes back, or as soon as the
// new peer's first packets arrive when it does — and the new session must deliver from
// scratch: every message exactly once, in order, nothing of the old session repeated.
import test from 'ava';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import dgram from 'node:dgram';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ConnectionState, EResult, SendFlags } from '../dist/index.mjs';
import { addrOf, endpoint, waitFor } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const TIMEOUT_CONNECTED = 3000;

/** A free UDP port on loopback (bound and released). */
async function freePort() {
  const s = dgram.createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Forks a fault peer; resolves once it is up. Its reports accumulate in `state`. */
async function startPeer(t, parentId, port, tag) {
  const child = fork(path.join(here, 'fixtures/fault-peer.mjs'), [parentId, `127.0.0.1:${port}`, tag], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const state = { child, sent: 0, got: [] };
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  child.on('message', (m) => {
    if (m.sent !== undefined) {
      state.sent = m.sent;
      state.got.push(...m.got);
    }
  });
  const [ready] = await once(child, 'message');
  t.is(ready.ready, port);
  return state;
}

async function kill(child) {
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  const [code, signal] = await exited;
  return { code, signal };
}

/** The survivor: receives channel 0, sends a numbered stream on channel 1 to `peerId`
 * (restarting a broken session, unless `stopOnFailure`: then it sends without
 * AutoRestartBrokenSession, so a send that runs between the failure and its event finds the
 * session failed instead of starting a new one). */
function survivor(parent, peerId, { stopOnFailure = false } = {}) {
  const s = { got: [], failures: [], sending: true, sent: 0 };
  parent.on('sessionRequest', (e) => parent.acceptSessionWithUser(e.identityRemote));
  parent.on('sessionFailed', (e) => {
    s.failures.push({ at: Date.now(), ...e.info });
    if (stopOnFailure) s.sending = false;
  });
  s.timer = setInterval(() => {
    for (const m of parent.receiveMessagesOnChannel(0, 1024)) s.got.push(m.data.toString());
    if (!s.sending) return;
    const flags = stopOnFailure ? SendFlags.Reliable : SendFlags.Reliable | SendFlags.AutoRestartBrokenSession;
    for (let k = 0; k < 50; k++) {
      const r = parent.sendMessageToUser(peerId, `s-${s.sent}`, flags, 1);
      if (r === EResult.OK) s.sent++;
      else break;
    }
  }, 2);
  return s;
}

/** Messages `<tag>-<i>` among `got`, as numbers, in arrival order. */
const numbers = (got, tag) => got.filter((m) => m.startsWith(`${tag}-`)).map((m) => Number(m.slice(tag.length + 1)));
const isPrefix = (nums) => nums.every((n, i) => n === i);

test('SIGKILL mid-transfer, nobody comes back: the session fails within timeoutConnected', async (t) => {
  t.timeout(30_000);
  const parent = await endpoint({ config: { timeoutConnected: TIMEOUT_CONNECTED } });
  t.teardown(() => parent.close());
  const port = await freePort();
  const peerId = `ip:127.0.0.1:${port}`;
  const s = survivor(parent, peerId, { stopOnFailure: true });
  t.teardown(() => clearInterval(s.timer));
  const p1 = await startPeer(t, addrOf(parent), port, 'a');
  await waitFor(() => numbers(s.got, 'a').length > 2000 && p1.got.length > 500, 10_000, 'traffic both ways');
  const { signal } = await kill(p1.child);
  t.is(signal, 'SIGKILL');
  const killedAt = Date.now();
  await waitFor(() => s.failures.length > 0, TIMEOUT_CONNECTED + 3000, 'the session to fail');
  const f = s.failures[0];
  const after = f.at - killedAt;
  t.log(`failed ${after} ms after the kill: ${f.endReason} ${f.endDebug}`);
  t.true(after <= TIMEOUT_CONNECTED + 500, `failed ${after} ms after the kill`);
  t.is(f.endReason, 5003, 'Misc_Timeout');
  t.true(f.identityRemote.toString() === peerId);
  t.true(f.endDebug.length > 0, 'with a reason text');
  t.true(isPrefix(numbers(s.got, 'a')), 'what arrived arrived once, in order');
  t.is(f.state, ConnectionState.ProblemDetectedLocally);
  // A failed session stays failed until it is closed: a send without the restart flag says so.
  t.is(parent.getSessionConnectionInfo(peerId).state, ConnectionState.ProblemDetectedLocally);
  t.is(parent.sendMessageToUser(peerId, 'late', SendFlags.Reliable, 1), EResult.NoConnection);
});

test('SIGKILL mid-transfer and a restart on the same port: the old session fails on the new peer\'s first packets, the new one delivers from scratch', async (t) => {
  t.timeout(40_000);
  const parent = await endpoint({ config: { timeoutConnected: 10_000 } });
  t.teardown(() => parent.close());
  const port = await freePort();
  const peerId = `ip:127.0.0.1:${port}`;
  const s = survivor(parent, peerId);
  t.teardown(() => clearInterval(s.timer));
  const p1 = await startPeer(t, addrOf(parent), port, 'a');
  await waitFor(() => numbers(s.got, 'a').length > 2000 && p1.got.length > 500, 10_000, 'traffic both ways');
  await kill(p1.child);
  const killedAt = Date.now();
  // The new process on the same port, at once: same identity (ip:127.0.0.1:port), new keys.
  const p2 = await startPeer(t, addrOf(parent), port, 'b');
  const restartedAt = Date.now();
  await waitFor(() => s.failures.length > 0, 5000, 'the old session to fail');
  const f = s.failures[0];
  t.log(`old session failed ${f.at - restartedAt} ms after the restart (${f.at - killedAt} ms after the kill): ${f.endReason} ${f.endDebug}`);
  t.true(f.at - killedAt < 10_000, 'well before timeoutConnected');
  t.true([5003, 5010].includes(f.endReason), `a timeout or NoConnection reason, got ${f.endReason}`);
  t.true(f.endDebug.length > 0);
  // The new session: the new peer's stream arrives from its first message, once, in order.
  await waitFor(() => numbers(s.got, 'b').length > 3000, 15_000, 'the new peer\'s messages');
  const b = numbers(s.got, 'b');
  t.true(isPrefix(b), `the new stream is 0..${b.length - 1} exactly once, in order`);
  const a = numbers(s.got, 'a');
  t.true(isPrefix(a), 'the old stream: a prefix, once, in order');
  const firstB = s.got.findIndex((m) => m.startsWith('b-'));
  t.false(s.got.slice(firstB).some((m) => m.startsWith('a-')), 'nothing of the old session after the new one began');
  // And what the survivor sends reaches the new peer: a run of s-<n> from where it resumed,
  // without gaps or repeats (messages queued for the dead peer are not replayed to it).
  await waitFor(() => p2.got.length > 500, 15_000, 'the survivor\'s messages at the new peer');
  const got2 = numbers(p2.got, 's');
  t.true(got2.every((n, i) => i === 0 || n === got2[i - 1] + 1), 'consecutive, once, in order');
  t.is(new Set(got2).size, got2.length);
  const lastOld = numbers(p1.got, 's').at(-1) ?? -1;
  t.true(got2[0] > lastOld, `nothing the old peer got is sent again (new from ${got2[0]}, old up to ${lastOld})`);
  s.sending = false;
  await kill(p2.child);
});
