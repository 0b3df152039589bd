// Interop with a stock GameNetworkingSockets peer: how sessions end. Polite close from either
// side, a peer killed mid-session, and a peer frozen (SIGSTOP) past the other's timeout, which
// the other must fail and, when the frozen one wakes up, tell. timeoutConnected is shortened
// on the side that has to notice, so that no scenario waits 10 s.
import { fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  DIRECTIONS,
  EResult,
  GnsState,
  SendFlags,
  connectPair,
  gnsPeer,
  interop,
  nmSend,
  sleep,
  until,
} from './harness.mjs';
import { ConnectionState } from '../../dist/index.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const MISC_TIMEOUT = 5003;
const SESSION_CLOSED = 1001; // the messages layer's reason for closeSessionWithUser

/** netmessages in a child process (fixtures/nm-child.mjs), so that it can be killed. */
async function nmChild(t, config = {}) {
  const child = fork(path.join(here, 'fixtures', 'nm-child.mjs'), [JSON.stringify({ config })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const events = [];
  let nextId = 1;
  child.on('message', (m) => events.push(m));
  t.teardown(() => {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  });
  const waitFor = (pred, ms, what) => until(() => events.find(pred), ms, what);
  const ready = await waitFor((e) => e.ev === 'ready', 10_000, 'the netmessages child');
  return {
    child,
    events,
    port: ready.port,
    waitFor,
    async request(cmd, ev, ms = 5000) {
      const id = nextId++;
      child.send({ ...cmd, id });
      return waitFor((e) => e.id === id && e.ev === ev, ms, `${ev} from the child`);
    },
  };
}

/** Connects a GNS peer and a netmessages child in `dir`; returns { gns, nm, conn, peerId }. */
async function childPair(t, dir, { gnsConfig = {}, nmConfig = {} } = {}) {
  const nm = await nmChild(t, nmConfig);
  const gns = await gnsPeer(t);
  let conn;
  let peerId;
  if (dir === 'gns->nm') {
    conn = await gns.connect(`127.0.0.1:${nm.port}`, gnsConfig);
    await gns.waitConnected(conn);
    await gns.sendMessages(conn, { text: 'hello from gns' });
    peerId = (await nm.waitFor((e) => e.ev === 'msg' && e.text === 'hello from gns', 10_000, 'hello at the child')).peer;
  } else {
    const port = await gns.listen(gnsConfig);
    peerId = `ip:127.0.0.1:${port}`;
    const sent = await nm.request({ cmd: 'send', peer: peerId, text: 'hello from nm' }, 'sent');
    t.is(sent.result, EResult.OK);
    conn = await gns.waitConnected();
  }
  return { gns, nm, conn, peerId };
}

for (const dir of DIRECTIONS) {
  interop(`GNS closes: netmessages sees ClosedByPeer with the reason and debug text (${dir})`, async (t) => {
    const s = await connectPair(t, dir);
    await s.gns.close(s.conn, 1234, 'gns says goodbye', false);
    const info = await until(() => {
      const i = s.nm.getSessionConnectionInfo(s.peerId);
      return i.state === ConnectionState.ClosedByPeer ? i : null;
    }, 5000, 'ClosedByPeer at netmessages');
    t.is(info.info.endReason, 1234);
    t.is(info.info.endDebug, 'gns says goodbye');
    t.is(s.nm.failures.length, 0, 'a polite close is no sessionFailed');
  });

  interop(`netmessages closes: GNS sees ClosedByPeer with the reason and debug text (${dir})`, async (t) => {
    const s = await connectPair(t, dir);
    t.true(s.nm.closeSessionWithUser(s.peerId));
    const e = await s.gns.waitState(s.conn, GnsState.ClosedByPeer, 5000);
    t.log(`GNS: end ${e.end} "${e.debug}"`);
    t.is(e.end, SESSION_CLOSED);
    t.true(e.debug.length > 0, 'with a debug text');
  });

  interop(`GNS killed mid-session: netmessages fails it within timeoutConnected (${dir})`, async (t) => {
    const timeout = 3000;
    const s = await connectPair(t, dir, { nmOptions: { config: { timeoutConnected: timeout } } });
    const pump = setInterval(() => nmSend(s.nm, s.peerId, 'tick', SendFlags.Reliable, 1), 100);
    t.teardown(() => clearInterval(pump));
    await sleep(300);
    const killedAt = Date.now();
    s.gns.kill();
    const f = await until(() => s.nm.failures[0], timeout + 5000, 'sessionFailed');
    const after = f.at - killedAt;
    t.log(`sessionFailed after ${after} ms: ${f.endReason} "${f.endDebug}"`);
    t.true(after <= timeout + 1500, `failed after ${after} ms`);
    t.is(f.endReason, MISC_TIMEOUT);
  });

  interop(`netmessages killed mid-session: GNS fails it within TimeoutConnected (${dir})`, async (t) => {
    const timeout = 3000;
    const s = await childPair(t, dir, { gnsConfig: { TimeoutConnected: timeout } });
    await s.gns.pump(s.conn, { everyMs: 100, channel: 1 });
    await sleep(300);
    const killedAt = Date.now();
    const from = s.gns.events.length;
    s.nm.child.kill('SIGKILL');
    const e = await s.gns.waitFor((x) => x.ev === 'status' && x.conn === s.conn && x.state === GnsState.ProblemDetectedLocally, timeout + 5000, 'GNS to fail the connection', { from });
    const after = Date.now() - killedAt;
    t.log(`GNS: ${e.end} "${e.debug}" after ~${after} ms`);
    t.true(after <= timeout + 1500, `failed after ${after} ms`);
    t.is(e.end, MISC_TIMEOUT);
  });

  interop(`GNS frozen past netmessages' timeout: netmessages fails it, then tells GNS when it wakes (${dir})`, async (t) => {
    const timeout = 2000;
    const s = await connectPair(t, dir, { nmOptions: { config: { timeoutConnected: timeout } } });
    await s.gns.pump(s.conn, { everyMs: 100, channel: 1 });
    const pump = setInterval(() => nmSend(s.nm, s.peerId, 'tick', SendFlags.Reliable, 1), 100);
    t.teardown(() => clearInterval(pump));
    await sleep(300);
    s.gns.pause();
    const f = await until(() => s.nm.failures[0], timeout + 5000, 'sessionFailed at netmessages');
    clearInterval(pump);
    t.is(f.endReason, MISC_TIMEOUT);
    const from = s.gns.events.length;
    const resumedAt = Date.now();
    s.gns.resume();
    // GNS's own timeout is 10 s; told by us (ConnectionClosed, or NoConnection to its next
    // packet) it must end the connection at once, as ClosedByPeer.
    const e = await s.gns.waitFor(
      (x) => x.ev === 'status' && x.conn === s.conn && x.state >= GnsState.ClosedByPeer,
      4000,
      'GNS to learn that netmessages dropped the connection',
      { from },
    );
    t.log(`GNS: state ${e.state}, end ${e.end} "${e.debug}" ${Date.now() - resumedAt} ms after waking`);
    t.is(e.state, GnsState.ClosedByPeer);
  });

  interop(`netmessages frozen past GNS's timeout: GNS fails it, then tells netmessages when it wakes (${dir})`, async (t) => {
    const timeout = 2000;
    const s = await childPair(t, dir, { gnsConfig: { TimeoutConnected: timeout } });
    await s.gns.pump(s.conn, { everyMs: 100, channel: 1 });
    await s.nm.request({ cmd: 'pump', peer: s.peerId, everyMs: 100, channel: 1 }, 'pumping');
    await sleep(300);
    const from = s.gns.events.length;
    s.nm.child.kill('SIGSTOP');
    const e = await s.gns.waitFor((x) => x.ev === 'status' && x.conn === s.conn && x.state === GnsState.ProblemDetectedLocally, timeout + 5000, 'GNS to fail the connection', { from });
    t.is(e.end, MISC_TIMEOUT);
    const resumedAt = Date.now();
    s.nm.child.kill('SIGCONT');
    let info;
    await until(async () => {
      info = await s.nm.request({ cmd: 'info', peer: s.peerId }, 'info');
      return info.state !== ConnectionState.Connected;
    }, 4000, 'netmessages to learn that GNS dropped the connection');
    const failed = s.nm.events.find((x) => x.ev === 'sessionFailed');
    t.log(`netmessages: state ${info.state}, end ${info.endReason} "${info.endDebug}" ${Date.now() - resumedAt} ms after waking; sessionFailed ${JSON.stringify(failed?.info ?? null)}`);
    // GNS sent ConnectionClosed (reason 5003) when it gave up; our socket kept it while frozen.
    t.is(info.state, ConnectionState.ClosedByPeer);
  });
}
