// Interop of the connection API (ISteamNetworkingSockets, no messages-layer header) with a
// stock GameNetworkingSockets peer in raw mode: a GNS client connects to a netmessages
// NetworkingSockets listen socket and a NetworkingSockets client connects to a GNS listen
// socket; both exchange messages on lanes, then one side closes. See docs/INTEROP.md.
import { EResult, GnsState, SendFlags, checkBody, gnsPeer, interop, makeBody, sleep, until } from './harness.mjs';
import { ConnectionState, NetworkingSockets } from '../../dist/index.mjs';

const LANES = [0, 1, 2];
const PRIORITIES = [0, 0, 1];
const WEIGHTS = [3, 1, 1];
const RELIABLE = 20;
const UNRELIABLE = 20;
const SIZE = 700;

/** A NetworkingSockets instance that records every status change; closed afterwards. */
async function nmSockets(t, options = {}) {
  const s = await NetworkingSockets.create(options);
  s.statuses = [];
  s.on('connectionStatusChanged', (e) => s.statuses.push(e));
  t.teardown(() => s.close());
  return s;
}

/** Drains `conn` until `count` of the messages match `pred`; returns every message taken. */
async function collect(s, conn, count, pred, ms = 20_000) {
  const got = [];
  const deadline = Date.now() + ms;
  for (;;) {
    got.push(...s.receiveMessagesOnConnection(conn, 256));
    const n = got.filter(pred).length;
    if (n >= count) return got;
    if (Date.now() > deadline) throw new Error(`netmessages: ${n}/${count} messages within ${ms} ms`);
    await sleep(5);
  }
}

/** Connects in `dir`; returns `{ gns, nm, gconn, nconn }` with both sides Connected. */
async function connectRaw(t, dir) {
  const nm = await nmSockets(t);
  const gns = await gnsPeer(t, { mode: 'raw' });
  let gconn;
  let nconn;
  if (dir === 'gns->nm') {
    const listen = nm.createListenSocketIP('127.0.0.1:0');
    const { port } = nm.getListenSocketAddress(listen);
    gconn = await gns.connect(`127.0.0.1:${port}`);
    const incoming = await until(() => nm.statuses.find((e) => e.info.state === ConnectionState.Connecting && e.info.listenSocket === listen), 10_000, 'the incoming connection');
    nconn = incoming.conn;
    t.is(nm.acceptConnection(nconn), EResult.OK);
    await gns.waitConnected(gconn, 10_000);
  } else {
    const port = await gns.listen();
    nconn = nm.connectByIPAddress(`127.0.0.1:${port}`);
    t.true(nconn > 0);
    gconn = (await gns.waitState(undefined, GnsState.Connected, 10_000)).conn;
  }
  await until(() => nm.getConnectionInfo(nconn)?.state === ConnectionState.Connected, 10_000, 'netmessages Connected');
  return { gns, nm, gconn, nconn };
}

/** Reliable pattern bodies on every lane, unreliable on lane 1, both ways; all checked. */
async function laneExchange(t, { gns, nm, gconn, nconn }) {
  t.is((await gns.lanes(gconn, PRIORITIES, WEIGHTS)).result, 1, 'GNS ConfigureConnectionLanes: k_EResultOK');
  t.is(nm.configureConnectionLanes(nconn, PRIORITIES, WEIGHTS), EResult.OK);
  // GNS -> netmessages
  for (const lane of LANES) {
    const r = await gns.sendMessages(gconn, { count: RELIABLE, size: SIZE, flags: SendFlags.Reliable, lane, seed: 300 + lane });
    t.is(r.ok, RELIABLE, JSON.stringify(r.failures));
  }
  const ur = await gns.sendMessages(gconn, { count: UNRELIABLE, size: SIZE, flags: SendFlags.Unreliable, lane: 1, seed: 399 });
  t.is(ur.ok, UNRELIABLE);
  // netmessages -> GNS
  for (const lane of LANES) {
    for (let i = 0; i < RELIABLE; i++) {
      t.is(nm.sendMessageToConnection(nconn, makeBody(i, 400 + lane, SIZE), SendFlags.Reliable, lane).result, EResult.OK);
    }
  }
  for (let i = 0; i < UNRELIABLE; i++) {
    t.is(nm.sendMessageToConnection(nconn, makeBody(i, 499, SIZE), SendFlags.Unreliable, 1).result, EResult.OK);
  }
  // What netmessages got: every reliable message once, in order per lane, intact, on its lane.
  const fromGns = (m) => m.data.length === SIZE && checkBody(m.data).seed >= 300 && checkBody(m.data).seed < 300 + LANES.length;
  const got = await collect(nm, nconn, LANES.length * RELIABLE, fromGns);
  for (const lane of LANES) {
    const mine = got.filter((m) => m.lane === lane && m.data.length === SIZE && checkBody(m.data).seed === 300 + lane);
    t.deepEqual(mine.map((m) => checkBody(m.data).seq), [...Array(RELIABLE).keys()], `lane ${lane} from GNS in order`);
    t.true(mine.every((m) => checkBody(m.data).ok));
  }
  const unreliable = got.filter((m) => checkBody(m.data).seed === 399);
  t.true(unreliable.every((m) => m.lane === 1 && checkBody(m.data).ok), 'unreliable from GNS intact, on lane 1');
  t.true(got.every((m) => m.conn === nconn));
  // What GNS got.
  const gotGns = await gns.waitMessages(LANES.length * RELIABLE, (m) => m.conn === gconn && m.reliable && m.seed >= 400 && m.seed < 499, 20_000);
  for (const lane of LANES) {
    const mine = gotGns.filter((m) => m.seed === 400 + lane);
    t.true(mine.every((m) => m.lane === lane && m.ok && m.size === SIZE), `lane ${lane} at GNS intact, on its lane`);
    t.deepEqual(mine.map((m) => m.seq), [...Array(RELIABLE).keys()], `lane ${lane} at GNS in order`);
  }
  await sleep(200);
  const unrelGns = gns.messages((m) => m.conn === gconn && m.seed === 499);
  t.true(unrelGns.every((m) => !m.reliable && m.ok && m.lane === 1), 'unreliable at GNS intact, on lane 1');
  t.log(`unreliable delivered: ${unreliable.length}/${UNRELIABLE} to netmessages, ${unrelGns.length}/${UNRELIABLE} to GNS`);
}

for (const dir of ['gns->nm', 'nm->gns']) {
  interop(`raw connection API: lanes both ways, GNS closes with a reason (${dir})`, async (t) => {
    const s = await connectRaw(t, dir);
    await laneExchange(t, s);
    await s.gns.close(s.gconn, 1234, 'raw goodbye');
    const e = await until(() => s.nm.statuses.find((x) => x.conn === s.nconn && x.info.state === ConnectionState.ClosedByPeer), 5000, 'ClosedByPeer at netmessages');
    t.is(e.info.endReason, 1234);
    t.is(e.info.endDebug, 'raw goodbye');
  });

  interop(`raw connection API: a 300 KB reliable message each way on a lane of its own (${dir})`, async (t) => {
    const s = await connectRaw(t, dir);
    const size = 300_000;
    t.is((await s.gns.lanes(s.gconn, PRIORITIES, WEIGHTS)).result, 1);
    t.is(s.nm.configureConnectionLanes(s.nconn, PRIORITIES, WEIGHTS), EResult.OK);
    t.is((await s.gns.sendMessages(s.gconn, { count: 1, size, flags: SendFlags.Reliable, lane: 2, seed: 651 })).ok, 1);
    const got = await collect(s.nm, s.nconn, 1, (m) => m.data.length === size, 20_000);
    const big = got.find((m) => m.data.length === size);
    t.is(big.lane, 2);
    t.true(checkBody(big.data).ok && checkBody(big.data).seed === 651, 'intact');
    t.is(s.nm.sendMessageToConnection(s.nconn, makeBody(0, 652, size), SendFlags.Reliable, 2).result, EResult.OK);
    const [g] = await s.gns.waitMessages(1, (m) => m.conn === s.gconn && m.seed === 652, 20_000);
    t.true(g.ok && g.reliable);
    t.is(g.size, size);
    t.is(g.lane, 2);
  });

  interop(`raw connection API: netmessages closes with a reason (${dir})`, async (t) => {
    const s = await connectRaw(t, dir);
    t.is(s.nm.sendMessageToConnection(s.nconn, makeBody(0, 77, 64), SendFlags.Reliable, 0).result, EResult.OK);
    await s.gns.waitMessages(1, (m) => m.conn === s.gconn && m.seed === 77 && m.ok, 10_000);
    const from = s.gns.events.length;
    t.true(s.nm.closeConnection(s.nconn, 1002, 'nm goodbye'));
    const e = await s.gns.waitFor((x) => x.ev === 'status' && x.conn === s.gconn && x.state === GnsState.ClosedByPeer, 5000, 'ClosedByPeer at GNS', { from });
    t.is(e.end, 1002);
    t.is(e.debug, 'nm goodbye');
  });
}
