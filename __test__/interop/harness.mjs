// Shared set-up of the interop tests: a stock GameNetworkingSockets peer (interop/gns-peer,
// built from ../shared/vendor/ or GNS_SRC) against a netmessages endpoint from dist/, on
// loopback, in either direction. Where no GNS source exists, every test is skipped with the
// reason printed; where the source exists but the build fails, every test fails.
import test from 'ava';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { NetworkingMessages, SendFlags, EResult } from '../../dist/index.mjs';
import { ensureGnsPeer, gnsSource } from '../../interop/build-gns.mjs';
import { GnsPeer, GnsState, checkBody, makeBody } from '../../interop/gns-peer.mjs';

export { GnsPeer, GnsState, checkBody, makeBody, SendFlags, EResult, NetworkingMessages };

const here = path.dirname(fileURLToPath(import.meta.url));
export const LOG_DIR = path.resolve(here, '..', '..', '.cache', 'interop-logs');

/** GNS client connects to a netmessages endpoint; a netmessages endpoint reaches a GNS server. */
export const DIRECTIONS = ['gns->nm', 'nm->gns'];

async function prepare() {
  const src = gnsSource();
  if (src.kind === 'none') {
    console.log(`interop tests skipped: ${src.reason}`);
    return { skip: src.reason };
  }
  if (src.kind === 'bad') return { error: src.reason };
  try {
    const built = await ensureGnsPeer({ log: () => {} });
    return { binary: built.peer };
  } catch (e) {
    return { error: `building the GNS peer failed: ${e.message}` };
  }
}

export const gns = await prepare();

const slug = (s) => s.replace(/[^a-zA-Z0-9]+/g, '-').replace(/^-|-$/g, '');

/**
 * Registers an interop test: skipped without a GNS source, failing with the build error when
 * the build failed. `opts.failing` names a known bug from issue 11: the test is then declared
 * with `test.failing` (it must fail until that bug is fixed; INTEROP_SHOW_KNOWN=1 runs it as a
 * plain test, to see how it fails). `opts.serial: false` lets it run beside other tests.
 */
export function interop(title, fn, opts = {}) {
  if (gns.skip) {
    test.skip(`${title} (skipped: ${gns.skip})`, () => {});
    return;
  }
  let reg = opts.serial === false ? test : test.serial;
  // INTEROP_SHOW_KNOWN=1 runs the known failures as plain tests, to see how they fail.
  if (opts.failing && !process.env.INTEROP_SHOW_KNOWN && !gns.error) reg = reg.failing;
  const name = opts.failing ? `${title} [known: ${opts.failing}]` : title;
  reg(name, async (t) => {
    if (gns.error) {
      t.fail(gns.error);
      return;
    }
    t.timeout(opts.timeout ?? 60_000);
    await fn(t);
  });
}

/** A netmessages endpoint on loopback that accepts every session and records failures. */
export async function nmEndpoint(t, options = {}) {
  const nm = await NetworkingMessages.create({ bind: '127.0.0.1:0', ...options });
  nm.failures = [];
  nm.requests = [];
  nm.on('sessionRequest', (e) => {
    nm.requests.push(e.identityRemote.toString());
    nm.acceptSessionWithUser(e.identityRemote);
  });
  nm.on('sessionFailed', (e) => nm.failures.push({ at: Date.now(), ...e.info, identityRemote: e.info.identityRemote.toString() }));
  t.teardown(() => nm.close());
  return nm;
}

/** Starts a GNS peer whose events go to .cache/interop-logs/<test>.log; quits it afterwards. */
export async function gnsPeer(t, init = {}, tag = '') {
  mkdirSync(LOG_DIR, { recursive: true });
  const logFile = path.join(LOG_DIR, `${slug(t.title)}${tag ? `-${tag}` : ''}.log`);
  const peer = await GnsPeer.start(gns.binary, init, { logFile, name: `gns${tag ? `-${tag}` : ''}` });
  t.teardown(async () => {
    if (!t.passed) {
      t.log(`GNS peer events (full log: ${path.relative(process.cwd(), logFile)}):\n${peer.tail(12)}`);
    }
    await peer.quit();
  });
  return peer;
}

/** Polls `fn` until it returns a truthy value; throws after `ms`. */
export async function until(fn, ms = 10_000, what = 'a condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Connects a GNS peer and a netmessages endpoint in `dir`, and exchanges one reliable hello
 * each way so that both know the other. Returns `{ gns, nm, conn, peerId, dir }`: `conn` is
 * the GNS connection handle, `peerId` the identity by which netmessages knows the GNS peer.
 *
 * - `gnsInit`: the peer's init fields (identity, global config, ...)
 * - `gnsConfig`: config of GNS's connection (by GNS's names), given to ConnectByIPAddress or
 *   to CreateListenSocketIP
 * - `nmOptions`: NetworkingMessages.create options
 */
export async function connectPair(t, dir, { gnsInit = {}, gnsConfig = {}, nmOptions = {}, nm: given, gns: givenGns, connectMs = 10_000 } = {}) {
  const nm = given ?? (await nmEndpoint(t, nmOptions));
  const peer = givenGns ?? (await gnsPeer(t, gnsInit));
  let conn;
  let peerId;
  t.teardown(() => {
    if (t.passed) return;
    let info = null;
    try {
      if (peerId !== undefined) info = nm.getSessionConnectionInfo(peerId);
    } catch {}
    const shown = info?.info ? { ...info.info, identityRemote: String(info.info.identityRemote), status: info.status } : null;
    t.log(`netmessages: session ${JSON.stringify(shown)}; sessionFailed ${JSON.stringify(nm.failures ?? [])}`);
  });
  if (dir === 'gns->nm') {
    conn = await peer.connect(`127.0.0.1:${nm.localAddress.port}`, gnsConfig);
    await peer.waitConnected(conn, connectMs);
    await peer.sendMessages(conn, { text: 'hello from gns', channel: 0 });
    const hello = await nmCollect(nm, 0, 1, connectMs, { raw: true });
    t.is(hello[0].data.toString(), 'hello from gns');
    peerId = hello[0].identityPeer.toString();
    t.is(nmSend(nm, peerId, Buffer.from('hello from nm'), SendFlags.Reliable, 0), EResult.OK);
    await peer.waitMessages(1, (m) => m.conn === conn && m.data === Buffer.from('hello from nm').toString('base64'), connectMs);
  } else {
    const port = await peer.listen(gnsConfig);
    peerId = `ip:127.0.0.1:${port}`;
    t.is(nmSend(nm, peerId, Buffer.from('hello from nm'), SendFlags.Reliable, 0), EResult.OK);
    const hello = await peer.waitMessages(1, (m) => m.data === Buffer.from('hello from nm').toString('base64'), connectMs);
    conn = hello[0].conn;
    await peer.waitConnected(conn, connectMs);
    await peer.sendMessages(conn, { text: 'hello from gns', channel: 0 });
    const back = await nmCollect(nm, 0, 1, connectMs, { raw: true });
    t.is(back[0].data.toString(), 'hello from gns');
    t.is(back[0].identityPeer.toString(), peerId);
  }
  return { gns: peer, nm, conn, peerId, dir };
}

/** sendMessageToUser, returning the EResult. */
export function nmSend(nm, peerId, data, flags = SendFlags.Reliable, channel = 0) {
  return nm.sendMessageToUser(peerId, data, flags, channel);
}

/**
 * Collects `count` messages on `channel` of a netmessages endpoint. Pattern bodies are checked
 * (each gets `.check = { ok, seq, seed }`) unless `raw`.
 */
export async function nmCollect(nm, channel, count, ms = 10_000, { raw = false, keep = [] } = {}) {
  const got = keep;
  const deadline = Date.now() + ms;
  while (got.length < count) {
    for (const m of nm.receiveMessagesOnChannel(channel, 256)) {
      if (!raw) m.check = checkBody(m.data);
      got.push(m);
    }
    if (got.length >= count) break;
    if (Date.now() > deadline) throw new Error(`netmessages: ${got.length}/${count} messages on channel ${channel} within ${ms} ms`);
    await sleep(5);
  }
  return got;
}

/**
 * The standard two-way exchange: `reliable` pattern messages on each of two channels and
 * `unreliable` on a third, from GNS to netmessages and back. Checks that reliable messages
 * arrive exactly once, in order per channel and intact, and unreliable ones intact.
 */
export async function exchange(t, s, { reliable = 40, unreliable = 40, size = 300, ms = 20_000, unreliableMin } = {}) {
  const { gns: peer, nm, conn, peerId } = s;
  // GNS -> netmessages
  for (const [ch, seed] of [
    [1, 101],
    [2, 102],
  ]) {
    const r = await peer.sendMessages(conn, { count: reliable, size, flags: SendFlags.Reliable, channel: ch, seed });
    t.is(r.ok, reliable, `GNS queued ${r.ok}/${reliable} reliable on channel ${ch}: ${JSON.stringify(r.failures)}`);
  }
  const ur = await peer.sendMessages(conn, { count: unreliable, size, flags: SendFlags.Unreliable, channel: 3, seed: 103 });
  t.is(ur.ok, unreliable);
  // netmessages -> GNS
  for (const [ch, seed] of [
    [1, 201],
    [2, 202],
  ]) {
    for (let i = 0; i < reliable; i++) t.is(nmSend(nm, peerId, makeBody(i, seed, size), SendFlags.Reliable, ch), EResult.OK);
  }
  for (let i = 0; i < unreliable; i++) nmSend(nm, peerId, makeBody(i, 203, size), SendFlags.Unreliable, 3);

  const c1 = await nmCollect(nm, 1, reliable, ms);
  const c2 = await nmCollect(nm, 2, reliable, ms);
  for (const [got, seed] of [
    [c1, 101],
    [c2, 102],
  ]) {
    t.deepEqual(
      got.map((m) => m.check.seq),
      [...Array(reliable).keys()],
      'netmessages got the reliable messages once each, in order',
    );
    t.true(got.every((m) => m.check.ok && m.check.seed === seed && m.size === size), 'and intact');
  }
  const g = await peer.waitMessages(2 * reliable, (m) => m.conn === conn && m.reliable && (m.seed === 201 || m.seed === 202), ms);
  for (const [ch, seed] of [
    [1, 201],
    [2, 202],
  ]) {
    const mine = g.filter((m) => m.seed === seed);
    t.deepEqual(
      mine.map((m) => m.seq),
      [...Array(reliable).keys()],
      `GNS got the reliable messages of channel ${ch} once each, in order`,
    );
    t.true(mine.every((m) => m.ok && m.ch === ch && m.size === size), 'and intact, on the right channel');
  }
  // Unreliable: wait until neither side holds any unsent, give stragglers a moment, then
  // check what came.
  await until(async () => {
    const ours = nm.getSessionConnectionInfo(peerId).status;
    const theirs = await peer.status(conn);
    return ours !== null && ours.pendingUnreliable === 0 && theirs.pendingUnreliable === 0;
  }, ms, 'unreliable messages to leave both senders');
  await sleep(300);
  const u1 = nm.receiveMessagesOnChannel(3, 1024).map((m) => ({ m, c: checkBody(m.data) }));
  t.true(u1.every(({ m, c }) => c.ok && c.seed === 103 && m.size === size), 'unreliable messages to netmessages are intact');
  const u2 = peer.messages((m) => m.conn === conn && m.seed === 203);
  t.true(u2.every((m) => m.ok && m.ch === 3 && !m.reliable && m.size === size), 'unreliable messages to GNS are intact');
  const min = unreliableMin ?? unreliable;
  t.true(u1.length >= min, `netmessages got ${u1.length}/${unreliable} unreliable`);
  t.true(new Set(u2.map((m) => m.seq)).size >= min, `GNS got ${u2.length}/${unreliable} unreliable`);
  return { toNm: { reliable: c1.length + c2.length, unreliable: u1.length }, toGns: { reliable: g.length, unreliable: u2.length } };
}
