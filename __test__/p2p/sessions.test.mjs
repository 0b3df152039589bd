// P2P sessions end to end: real netmessages endpoints (peer.mjs, one Node process each) in
// network namespaces behind real iptables NATs, the bundled signaling server and coturn on
// the public network. A message sent to an identity finds the peer through signaling, ICE
// picks the path (direct, hole-punched, or relayed through coturn), and the session runs on
// it; getSessionConnectionInfo says which. The failure modes end as sessionFailed with a
// reason and a text that says which part failed, within timeoutInitial.
//
// Each scenario logs its connect time (first send to the peer's receipt of that message:
// signaling, gathering, ICE checks and the GNS handshake) and the route it took.
// Needs root, iproute2, iptables and coturn; skips (saying why) otherwise.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Internet, cleanupLeftovers, netnsUnavailable } from './netns.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const peerScript = join(here, 'peer.mjs');
const socketsPeerScript = join(here, 'sockets-peer.mjs');

// Steam's ConnectionInfo flags.
const FLAG_FAST = 8;
const FLAG_RELAYED = 16;
const CONNECTED = 3;

const SIGNAL_HOST = '203.0.113.2';
const SIGNAL = `ws://${SIGNAL_HOST}:8080`;
// The same signaling server over IPv6 (it listens on every address of pub), and coturn's
// IPv6 address, for the IPv6-only hosts.
const SIGNAL6 = 'ws://[2001:db8::1]:8080';
const STUN6 = '[2001:db8::1]:3478';
const TURN6 = { address: '[2001:db8::1]:3478', username: 'alice', password: 'secret' };
const STUN = '203.0.113.1:3478';
const TURN = { address: '203.0.113.1:3478', username: 'alice', password: 'secret' };
// On the public bridge, but nobody has it: datagrams to it go nowhere.
const NOBODY = '203.0.113.3:3478';

function unavailable() {
  const why = netnsUnavailable();
  if (why) return why;
  try {
    execFileSync('turnserver', ['--help'], { stdio: 'ignore' });
  } catch (e) {
    if (e.code === 'ENOENT') return 'turnserver (coturn) is not installed: apt-get install coturn';
  }
  if (!existsSync(join(root, 'dist', 'index.mjs'))) return 'dist/ is missing: npm run build';
  return null;
}

/** A peer.mjs process: commands with replies, and the events it reports. */
class Peer {
  constructor(child, identity) {
    this.child = child;
    this.identity = identity;
    this.events = [];
    this.waiters = [];
    this.replies = new Map();
    this.nextId = 1;
    this.stderr = '';
    child.stderr.on('data', (d) => {
      this.stderr += d;
    });
    this.gone = false;
    this.exited = new Promise((resolve) =>
      child.on('exit', (code) => {
        this.gone = true;
        resolve(code);
      }),
    );
    // A peer that already exited (a test's own ending, or a crash the test reports) must
    // not turn a later write into an uncaught EPIPE.
    child.stdin.on('error', () => {});
    createInterface({ input: child.stdout }).on('line', (l) => {
      let m;
      try {
        m = JSON.parse(l);
      } catch {
        return;
      }
      if (m.id !== undefined) {
        this.replies.get(m.id)?.(m);
        this.replies.delete(m.id);
        return;
      }
      this.events.push({ ...m, at: Date.now() });
      for (const w of [...this.waiters]) w();
    });
  }

  /** Waits for an event matching `pred` (seen already or to come). */
  waitFor(pred, ms, what) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const e = this.events.find(pred);
        if (e === undefined) return false;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(e);
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`${this.identity}: no ${what} within ${ms} ms; events ${JSON.stringify(this.events)} ${this.stderr}`));
      }, ms);
      if (!check()) this.waiters.push(check);
    });
  }

  cmd(c, ms = 10000) {
    const id = this.nextId++;
    if (this.gone) return Promise.reject(new Error(`${this.identity}: the peer process has exited ${this.stderr}`));
    this.child.stdin.write(`${JSON.stringify({ id, ...c })}\n`);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.identity}: no reply to ${c.cmd} ${this.stderr}`)), ms);
      this.replies.set(id, (m) => {
        clearTimeout(timer);
        if (m.error) reject(new Error(`${this.identity}: ${m.error}`));
        else resolve(m);
      });
    });
  }

  send(to, text, reliable = true) {
    return this.cmd({ cmd: 'send', to, text, reliable });
  }

  async info(to) {
    return (await this.cmd({ cmd: 'info', to })).info;
  }

  async close() {
    try {
      await this.cmd({ cmd: 'close' }, 3000);
    } catch {
      // killed below
    }
    this.child.kill('SIGKILL');
  }
}

const skip = unavailable();
if (skip) {
  test('P2P sessions through NATs', (t) => {
    t.log(`SKIP: ${skip}`);
    t.pass();
  });
} else {
  const { generateKeyPair, issueCertificate } = await import('../../dist/index.mjs');
  const ca = generateKeyPair();
  const left = cleanupLeftovers();
  const net = new Internet();
  const peers = [];
  let signalChild;

  const start = async (host, identity, options = {}, script = peerScript) => {
    const k = generateKeyPair();
    const certificate = issueCertificate({ caPrivateKey: ca.privateKey, publicKey: k.publicKey, identity });
    const opts = {
      identity,
      privateKey: Buffer.from(k.privateKey).toString('hex'),
      certificate: Buffer.from(certificate).toString('hex'),
      ca: Buffer.from(ca.publicKey).toString('hex'),
      signaling: SIGNAL,
      stunServers: [STUN],
      turnServers: [TURN],
      ...options,
    };
    const child = net.spawn(host.ns, process.execPath, [script, JSON.stringify(opts)]);
    const p = new Peer(child, identity);
    peers.push(p);
    const ready = await p.waitFor((e) => e.ready || e.error, 15000, 'start');
    if (ready.error) throw new Error(`${identity}: ${ready.error}`);
    return p;
  };

  /** The bundled signaling server (the CLI) in the pub namespace; resolves once it listens. */
  const startSignal = async () => {
    signalChild = net.spawn(net.pub, process.execPath, [
      join(root, 'bin', 'netmessages.mjs'), 'signal', '--host', '::', '--port', '8080',
      '--trusted-ca', Buffer.from(ca.publicKey).toString('hex'),
    ]);
    const child = signalChild;
    await new Promise((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d) => {
        err += d;
      });
      createInterface({ input: child.stdout }).once('line', resolve);
      child.once('exit', (code) => reject(new Error(`signaling server exited ${code}: ${err}`)));
    });
  };

  test.before(async (t) => {
    if (left.length) t.log(`removed leftovers: ${left.join(', ')}`);
    const t0 = Date.now();
    net.up();
    await net.startCoturn({ alice: 'secret' });
    const routers = {
      port: 'port-restricted',
      port2: 'port-restricted',
      sym: 'symmetric',
      sym2: 'symmetric',
      full: 'full-cone',
      addr: 'address-restricted',
    };
    for (const [name, type] of Object.entries(routers)) {
      net.addRouter(`r-${name}`, type);
      net.addHost(`h-${name}`, `r-${name}`);
    }
    net.addHost('h-lan2', 'r-port');
    net.addPublicHost('h-pub');
    net.addPublicHost('h-pub2');
    net.addPublicHostV6('h-v6');
    net.addPublicHostV6('h-v6b');
    await startSignal();
    t.log(`test bed up in ${Date.now() - t0} ms: ${net.namespaces.length} namespaces, coturn, signaling at ${SIGNAL}`);
  });

  test.after.always(async (t) => {
    await Promise.all(peers.map((p) => p.close()));
    net.down();
    t.deepEqual(net.remaining(), [], 'every namespace removed');
  });

  const host = (name) => net.hosts.get(name);

  /**
   * `from` (on host x) sends to `to` (on host y); returns the connect time and the route
   * both sides report, after messages went both ways, reliable and unreliable.
   */
  const session = async (t, tag, x, y, wantRelayed, options = {}, optionsB = options) => {
    const a = await start(host(x), `str:${tag}-a`, options);
    const b = await start(host(y), `str:${tag}-b`, optionsB);
    const t0 = Date.now();
    t.is((await a.send(b.identity, 'hello')).result, 1, 'send accepted');
    const got = await b.waitFor((e) => e.event === 'message' && e.text === 'hello', 5000, 'first message').catch(async (e) => {
      throw new Error(`${e.message}; ${a.identity} has ${JSON.stringify(await a.info(b.identity))} after ${JSON.stringify(a.events)}`);
    });
    const connectMs = got.at - t0;
    t.is(got.from, a.identity);
    // The route can still upgrade (relay to direct) just after the first message: give ICE
    // a moment to settle before reading it.
    const deadline = Date.now() + 3000;
    let ia = await a.info(b.identity);
    while (Date.now() < deadline && ((ia.flags & FLAG_RELAYED) !== 0) !== wantRelayed) {
      await new Promise((r) => setTimeout(r, 100));
      ia = await a.info(b.identity);
    }
    // Back, on the session b already has: reliable, then unreliable.
    t.is((await b.send(a.identity, 'hi back')).result, 1);
    await a.waitFor((e) => e.event === 'message' && e.text === 'hi back', 5000, 'reply');
    for (let i = 0; i < 20; i++) await b.send(a.identity, `u${i}`, false);
    await a.waitFor((e) => e.event === 'message' && e.text.startsWith('u') && !e.reliable, 3000, 'an unreliable message');
    await new Promise((r) => setTimeout(r, 200));
    const unreliable = a.events.filter((e) => e.event === 'message' && e.text.startsWith('u')).length;
    const ib = await b.info(a.identity);
    for (const [who, i] of [[a, ia], [b, ib]]) t.is(i.state, CONNECTED, `${who.identity} connected`);
    const route = (i) => ((i.flags & FLAG_RELAYED) !== 0 ? 'relayed' : (i.flags & FLAG_FAST) !== 0 ? 'direct (LAN, Fast)' : 'direct');
    t.log(
      `${tag.padEnd(10)} ${x} -> ${y}: connected in ${connectMs} ms, route ${route(ia)} (${a.identity} sees ${ia.remoteAddress}, ${b.identity} sees ${ib.remoteAddress}; ping ${ia.ping} ms); ${unreliable}/20 unreliable arrived`,
    );
    t.is((ia.flags & FLAG_RELAYED) !== 0, wantRelayed, `${a.identity}: ${route(ia)}`);
    t.is((ib.flags & FLAG_RELAYED) !== 0, wantRelayed, `${b.identity}: ${route(ib)}`);
    await Promise.all([a.close(), b.close()]);
    return { connectMs, ia, ib };
  };

  test.serial('both public: direct', async (t) => {
    const r1 = await session(t, 'pub', 'h-pub', 'h-pub2', false);
    t.is(r1.ia.remoteAddress.split(':')[0], host('h-pub2').ip, 'the peer\'s own address');
    await session(t, 'pub-rev', 'h-pub2', 'h-pub', false);
  });

  test.serial('port-restricted cone vs cone: hole-punched, direct', async (t) => {
    const r = await session(t, 'cone', 'h-port', 'h-port2', false);
    t.is(r.ia.remoteAddress.split(':')[0], net.routers.get('r-port2').wanIp, 'the peer\'s NAT mapping');
    await session(t, 'cone-rev', 'h-port2', 'h-port', false);
  });

  test.serial('symmetric vs symmetric: relayed through coturn', async (t) => {
    const r = await session(t, 'sym', 'h-sym', 'h-sym2', true);
    // Either one side's allocation carries the path (that side sees the peer's NAT mapping
    // towards coturn, the other the relayed address on coturn), or both allocations do
    // (relay to relay, each side seeing the other's relayed address): which pair ICE
    // nominates depends on which check answers first, and both are relayed through coturn.
    const ips = [r.ia, r.ib].map((i) => i.remoteAddress.split(':')[0]);
    t.true(ips.includes('203.0.113.1'), `one side sees a relayed address: ${ips}`);
    const other = ips.find((ip) => ip !== '203.0.113.1') ?? '203.0.113.1';
    t.true(
      [net.routers.get('r-sym').wanIp, net.routers.get('r-sym2').wanIp, '203.0.113.1'].includes(other),
      `the other a NAT mapping or a relayed address: ${ips}`,
    );
    await session(t, 'sym-rev', 'h-sym2', 'h-sym', true);
  });

  test.serial('full-cone vs symmetric: direct (the full cone takes the symmetric mapping)', async (t) => {
    const r = await session(t, 'full-sym', 'h-full', 'h-sym', false);
    t.is(r.ia.remoteAddress.split(':')[0], net.routers.get('r-sym').wanIp, "the symmetric peer's NAT mapping");
    await session(t, 'sym-full', 'h-sym', 'h-full', false);
  });

  test.serial('address-restricted cone vs port-restricted cone: hole-punched, direct', async (t) => {
    const r = await session(t, 'addr-port', 'h-addr', 'h-port', false);
    t.is(r.ia.remoteAddress.split(':')[0], net.routers.get('r-port').wanIp, "the peer's NAT mapping");
    await session(t, 'port-addr', 'h-port', 'h-addr', false);
  });

  // IPv6: hosts with no IPv4 at all (signaling, STUN and TURN reached over IPv6), with each
  // other and with a dual-stack public host.
  const V6 = { signaling: SIGNAL6, stunServers: [STUN6], turnServers: [TURN6] };
  const isV6 = (addr) => addr.startsWith('[2001:db8::');
  test.serial('IPv6 only: two v6-only hosts direct, and relayed over IPv6 with p2pTransportIceEnable = 1', async (t) => {
    const r = await session(t, 'v6', 'h-v6', 'h-v6b', false, V6);
    t.is(r.ia.remoteAddress, `[${host('h-v6b').ip6}]:${r.ia.remoteAddress.split(']:')[1]}`, "the peer's own IPv6 address");
    t.true(isV6(r.ib.remoteAddress), r.ib.remoteAddress);
    await session(t, 'v6-rev', 'h-v6b', 'h-v6', false, V6);
    const relay = await session(t, 'v6-relay', 'h-v6', 'h-v6b', true, { ...V6, config: { p2pTransportIceEnable: 1 } });
    t.true(relay.ia.remoteAddress.startsWith('[2001:db8::1]:'), `a relayed address on coturn: ${relay.ia.remoteAddress}`);
  });

  test.serial('IPv6-only host and dual-stack public host: direct over IPv6, both ways', async (t) => {
    // The dual-stack side reaches signaling and STUN over IPv4 as the others do, and has IPv6
    // host candidates: the pair that works is the IPv6 one.
    const r = await session(t, 'v6-dual', 'h-v6', 'h-pub', false, V6, {});
    t.true(isV6(r.ia.remoteAddress) && isV6(r.ib.remoteAddress), `${r.ia.remoteAddress} / ${r.ib.remoteAddress}`);
    await session(t, 'dual-v6', 'h-pub', 'h-v6', false, {}, V6);
  });

  test.serial('same LAN: direct on the private addresses, Fast', async (t) => {
    const r = await session(t, 'lan', 'h-port', 'h-lan2', false);
    t.is(r.ia.remoteAddress.split(':')[0], host('h-lan2').ip, 'the peer\'s LAN address');
    t.is(r.ia.flags & FLAG_FAST, FLAG_FAST, 'Fast: same subnet');
    t.is(r.ib.flags & FLAG_FAST, FLAG_FAST);
    await session(t, 'lan-rev', 'h-lan2', 'h-port', false);
  });

  test.serial('one behind NAT, one public: direct', async (t) => {
    const r = await session(t, 'nat-pub', 'h-port', 'h-pub', false);
    t.is(r.ia.flags & FLAG_FAST, 0, 'not Fast: across the internet');
    await session(t, 'pub-nat', 'h-pub', 'h-port', false);
  });

  test.serial("symmetric vs port-restricted cone: relayed (servers given as Steam's config keys)", async (t) => {
    const config = { p2pStunServerList: STUN, p2pTurnServerList: TURN.address, p2pTurnUserList: TURN.username, p2pTurnPassList: TURN.password };
    await session(t, 'sym-cone', 'h-sym', 'h-port', true, { stunServers: [], turnServers: [], config });
    await session(t, 'cone-sym', 'h-port', 'h-sym', true, { stunServers: [], turnServers: [], config });
  });

  test.serial('p2pTransportIceEnable = 1 (relay only) relays even between public hosts', async (t) => {
    await session(t, 'relay-only1', 'h-pub', 'h-pub2', true, { config: { p2pTransportIceEnable: 1 } }, {});
    await session(t, 'relay-only', 'h-pub', 'h-pub2', true, { config: { p2pTransportIceEnable: 1 } });
  });

  test.serial('signaling restarted mid-session: the session keeps working, new ones work after', async (t) => {
    const a = await start(host('h-port'), 'str:restart-a');
    const b = await start(host('h-port2'), 'str:restart-b');
    await a.send(b.identity, 'before');
    await b.waitFor((e) => e.event === 'message' && e.text === 'before', 5000, 'first message');
    signalChild.kill('SIGKILL');
    await new Promise((r) => signalChild.once('exit', r));
    const t0 = Date.now();
    for (let i = 0; i < 10; i++) {
      await a.send(b.identity, `down a${i}`);
      await b.send(a.identity, `down b${i}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await b.waitFor((e) => e.text === 'down a9', 5000, 'messages while signaling is down');
    await a.waitFor((e) => e.text === 'down b9', 5000, 'messages while signaling is down');
    t.is(b.events.filter((e) => e.text?.startsWith('down a')).length, 10, 'all of a\'s reliable messages');
    t.is(a.events.filter((e) => e.text?.startsWith('down b')).length, 10, 'all of b\'s');
    t.is((await a.info(b.identity)).state, CONNECTED);
    await startSignal();
    // A new session to a must wait for a's client to register again (backoff, at most 5 s).
    const c = await start(host('h-pub'), 'str:restart-c');
    const t1 = Date.now();
    let n = 0;
    while (!a.events.some((e) => e.text === 'from c') && Date.now() - t1 < 10000) {
      await c.send(a.identity, 'from c');
      n++;
      await new Promise((r) => setTimeout(r, 250));
    }
    t.true(a.events.some((e) => e.text === 'from c'), 'a reachable through the restarted server');
    t.log(`signaling down ${t1 - t0} ms without a failure; a new session reached a ${Date.now() - t1} ms after the restart (${n} sends)`);
    t.false([...a.events, ...b.events].some((e) => e.event === 'failed'), 'no session failed');
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  // Relayed throughput against coturn's own load tool, both measured the same way: the bytes
  // coturn sends (an iptables counter on its OUTPUT in pub) per second. Ours: 16 MiB of
  // reliable 16 KiB messages over one relayed session, h-sym to h-sym2 (both symmetric).
  // Theirs: turnutils_uclient, UDP with channels (-c: no RTCP pairs; -y: its clients send to
  // each other's relayed addresses, so every datagram crosses coturn once), 1200-byte messages
  // with no interval (-z 0), its best 1-second window. One uclient process sends at most 50
  // messages per client per timer tick and levels off around 10-15 k messages/s however many
  // clients it runs, so the flood is UCLIENT_PROCS processes of 50 clients each; coturn spreads
  // those hundreds of allocations over its relay threads (one per core), where our session is
  // one allocation pair. The ratio is logged (a speed figure, not an assertion: the machine is
  // shared); docs/P2P.md has the runs.
  const UCLIENT_PROCS = 12;
  const ROUNDS = 2;
  const PARALLEL = 4;
  test.serial('relayed throughput vs a raw UDP flood from turnutils_uclient through the same coturn', async (t) => {
    const relayed = net.relayCounter();
    const mbps = (bytes, ms) => (bytes * 8) / (ms / 1000) / 1e6;

    /** Waits for a's hello at b; on failure says what a knows of the session and heard. */
    const firstMessage = (a, b) =>
      b.waitFor((e) => e.text === 'hello', 5000, 'first message').catch(async (e) => {
        throw new Error(`${e.message}; ${a.identity} has ${JSON.stringify(await a.info(b.identity))} after ${JSON.stringify(a.events)}`);
      });

    /** Our flood, on a fresh relayed session: [goodput, what coturn sent] in Mbit/s. */
    const ours = async (round) => {
      const a = await start(host('h-sym'), `str:flood${round}-a`);
      const b = await start(host('h-sym2'), `str:flood${round}-b`);
      await a.send(b.identity, 'hello');
      await firstMessage(a, b);
      t.true(((await a.info(b.identity)).flags & FLAG_RELAYED) !== 0, 'relayed');
      const total = 16 * 1024 * 1024;
      const before = await relayed();
      const t0 = Date.now();
      await a.cmd({ cmd: 'flood', to: b.identity, bytes: total, size: 16 * 1024 }, 60000);
      let st;
      for (;;) {
        st = await b.cmd({ cmd: 'flood-stats' });
        if (st.bytes >= total || Date.now() - t0 > 30000) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const after = await relayed();
      t.is(st.bytes, total, 'every reliable byte arrived');
      await Promise.all([a.close(), b.close()]);
      const ms = st.lastAt - t0;
      return { goodput: mbps(st.bytes, ms), relayed: mbps(after - before, ms), ms };
    };

    /** PARALLEL relayed sessions at once (separate endpoints, so separate allocations). */
    const oursParallel = async () => {
      const pairs = [];
      for (let i = 0; i < PARALLEL; i++) {
        const a = await start(host('h-sym'), `str:pflood${i}-a`);
        const b = await start(host('h-sym2'), `str:pflood${i}-b`);
        await a.send(b.identity, 'hello');
        await firstMessage(a, b);
        pairs.push([a, b]);
      }
      const each = 8 * 1024 * 1024;
      const before = await relayed();
      const t0 = Date.now();
      await Promise.all(pairs.map(([a, b]) => a.cmd({ cmd: 'flood', to: b.identity, bytes: each, size: 16 * 1024 }, 60000)));
      let stats;
      for (;;) {
        stats = await Promise.all(pairs.map(([, b]) => b.cmd({ cmd: 'flood-stats' })));
        if (stats.every((x) => x.bytes >= each) || Date.now() - t0 > 30000) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const after = await relayed();
      for (const x of stats) t.is(x.bytes, each, 'every reliable byte arrived');
      await Promise.all(pairs.flat().map((p) => p.close()));
      const ms = Math.max(...stats.map((x) => x.lastAt)) - t0;
      return { relayed: mbps(after - before, ms), ms };
    };

    /** The tool's flood, sampled every 100 ms: coturn's best 1-second window, Mbit/s. */
    const theirs = async (from) => {
      const kids = [];
      const outputs = [];
      for (let i = 0; i < UCLIENT_PROCS; i++) {
        const c = net.spawn(host(from).ns, 'turnutils_uclient', ['-y', '-c', '-X', '-l', '1200', '-n', '400', '-m', '50', '-z', '0', '-u', 'alice', '-w', 'secret', '203.0.113.1']);
        let o = '';
        c.stdout.on('data', (d) => {
          o += d;
        });
        c.stderr.on('data', (d) => {
          o += d;
        });
        c.on('error', (e) => {
          o += String(e);
        });
        kids.push(c);
        outputs.push(() => o);
      }
      const samples = [];
      const u0 = Date.now();
      let last = await relayed();
      let lastGrowth = Date.now();
      let started = false;
      // Until it has flooded and gone quiet for 2 s (uclient needs seconds to allocate its
      // clients first, and lingers 10 s before exiting).
      while (Date.now() - u0 < 30000) {
        await new Promise((r) => setTimeout(r, 100));
        const v = await relayed();
        samples.push({ at: Date.now(), bytes: v });
        if (v - last > 1000000) {
          started = true;
          lastGrowth = Date.now();
        }
        last = v;
        if (started && Date.now() - lastGrowth > 2000) break;
      }
      for (const c of kids) c.kill('SIGKILL');
      let best = 0;
      for (let i = 0; i < samples.length; i++) {
        const j = samples.findIndex((x) => x.at - samples[i].at >= 1000);
        if (j < 0) break;
        best = Math.max(best, mbps(samples[j].bytes - samples[i].bytes, samples[j].at - samples[i].at));
      }
      const out = outputs[0]();
      const summary = out
        .split('\n')
        .filter((l) => /tot_send_bytes|lost packets/i.test(l))
        .slice(-2)
        .map((l) => l.replace(/^[\s\d:]*/, '').trim())
        .join('; ');
      t.true(started && best > 1, `turnutils_uclient flooded coturn: ${best.toFixed(1)} Mbit/s; its output: ${summary || out.slice(-600)}`);
      return { best, summary };
    };

    // Alternated, so both see the same machine; each side's best round counts. Each round's
    // uclient runs from another host: a killed uclient leaves its allocations on coturn, and a
    // new one whose NAT mapping reuses such a 5-tuple is refused (437) and backs off.
    const runs = [];
    for (let round = 0; round < ROUNDS; round++) {
      runs.push({ ours: await ours(round), theirs: await theirs(['h-sym', 'h-sym2'][round % 2]) });
    }
    const parallel = await oursParallel();
    const bestOurs = Math.max(...runs.map((r) => r.ours.relayed));
    const bestTheirs = Math.max(...runs.map((r) => r.theirs.best));
    for (const [i, r] of runs.entries()) {
      t.log(
        `round ${i + 1}: relayed session 16 MiB reliable in ${r.ours.ms} ms = ${r.ours.goodput.toFixed(0)} Mbit/s of messages, coturn sent ${r.ours.relayed.toFixed(0)} Mbit/s; ` +
          `turnutils_uclient x${UCLIENT_PROCS} (50 clients each, 1200 B, -z 0): coturn sent ${r.theirs.best.toFixed(0)} Mbit/s in its best second (${r.theirs.summary})`,
      );
    }
    t.log(`best of ${ROUNDS}: ours ${bestOurs.toFixed(0)} Mbit/s, turnutils_uclient ${bestTheirs.toFixed(0)} Mbit/s through coturn: ratio ${(bestOurs / bestTheirs).toFixed(2)} (issue target >= 0.8)`);
    t.log(
      `${PARALLEL} relayed sessions at once (8 MiB each, ${PARALLEL} endpoint pairs): coturn sent ${parallel.relayed.toFixed(0)} Mbit/s over ${parallel.ms} ms: ratio ${(parallel.relayed / bestTheirs).toFixed(2)}`,
    );
  });

  // The connection API over P2P: sockets-peer.mjs runs a NetworkingSockets with a P2P listen
  // socket on virtual port 7 (b) or dials it by identity (a).
  const VPORT = 7;
  const startSockets = (h, identity, options = {}) => start(host(h), identity, options, socketsPeerScript);

  /**
   * `a` (host x) connectP2P's to `b` (host y) at VPORT; messages both ways, reliable and
   * unreliable; both sides' getConnectionInfo; then b closes with a reason a must see.
   */
  const connection = async (t, tag, x, y, wantRelayed) => {
    const a = await startSockets(x, `str:${tag}-a`);
    const b = await startSockets(y, `str:${tag}-b`, { listen: VPORT });
    const t0 = Date.now();
    const { conn } = await a.cmd({ cmd: 'connect', to: b.identity, vport: VPORT });
    t.true(conn > 0, 'a handle');
    const upA = await a.waitFor((e) => e.event === 'connected', 5000, 'connected').catch(async (e) => {
      throw new Error(`${e.message}; ${JSON.stringify(await a.cmd({ cmd: 'info', conn }))}`);
    });
    const upB = await b.waitFor((e) => e.event === 'connected', 5000, 'accepted connection');
    const connectMs = upA.at - t0;
    t.is(upA.peer, b.identity);
    t.is(upB.peer, a.identity);
    // As for sessions: the route may still upgrade just after connecting.
    const deadline = Date.now() + 3000;
    let ia = (await a.cmd({ cmd: 'info', conn })).info;
    while (Date.now() < deadline && ((ia.flags & FLAG_RELAYED) !== 0) !== wantRelayed) {
      await new Promise((r) => setTimeout(r, 100));
      ia = (await a.cmd({ cmd: 'info', conn })).info;
    }
    t.is((await a.cmd({ cmd: 'send', conn, text: 'hello', reliable: true })).result, 1);
    await b.waitFor((e) => e.event === 'message' && e.text === 'hello' && e.reliable, 5000, 'message');
    t.is((await b.cmd({ cmd: 'send', conn: upB.conn, text: 'hi back', reliable: true })).result, 1);
    await a.waitFor((e) => e.event === 'message' && e.text === 'hi back', 5000, 'reply');
    for (let i = 0; i < 20; i++) await b.cmd({ cmd: 'send', conn: upB.conn, text: `u${i}`, reliable: false });
    await a.waitFor((e) => e.event === 'message' && e.text.startsWith('u') && !e.reliable, 3000, 'an unreliable message');
    await new Promise((r) => setTimeout(r, 200));
    const unreliable = a.events.filter((e) => e.event === 'message' && e.text.startsWith('u')).length;
    const ib = (await b.cmd({ cmd: 'info', conn: upB.conn })).info;
    for (const [who, i] of [[a, ia], [b, ib]]) t.is(i.state, CONNECTED, `${who.identity} connected`);
    t.is(ib.listenSocket > 0, true, "b's connection came through its listen socket");
    const route = (i) => ((i.flags & FLAG_RELAYED) !== 0 ? 'relayed' : (i.flags & FLAG_FAST) !== 0 ? 'direct (LAN, Fast)' : 'direct');
    t.log(
      `connectP2P ${tag.padEnd(10)} ${x} -> ${y}: connected in ${connectMs} ms, route ${route(ia)} (${a.identity} sees ${ia.remoteAddress}, ${b.identity} sees ${ib.remoteAddress}; ping ${ia.ping} ms); ${unreliable}/20 unreliable arrived`,
    );
    t.is((ia.flags & FLAG_RELAYED) !== 0, wantRelayed, `${a.identity}: ${route(ia)}`);
    t.is((ib.flags & FLAG_RELAYED) !== 0, wantRelayed, `${b.identity}: ${route(ib)}`);
    // The listener closes with a reason; the dialler hears it.
    t.true((await b.cmd({ cmd: 'close-conn', conn: upB.conn, reason: 1042, debug: 'game over' })).ok);
    const ended = await a.waitFor((e) => e.event === 'ended', 5000, 'the close');
    t.is(ended.endReason, 1042);
    t.is(ended.endDebug, 'game over');
    t.is(ended.state, 4, 'ClosedByPeer');
    await Promise.all([a.close(), b.close()]);
    return { connectMs, ia, ib };
  };

  test.serial('connectP2P: port-restricted cone vs cone, hole-punched', async (t) => {
    const r = await connection(t, 'c-cone', 'h-port', 'h-port2', false);
    t.is(r.ia.remoteAddress.split(':')[0], net.routers.get('r-port2').wanIp, "the peer's NAT mapping");
    await connection(t, 'c-cone-rev', 'h-port2', 'h-port', false);
  });

  test.serial('connectP2P: symmetric vs symmetric, relayed through coturn', async (t) => {
    const r = await connection(t, 'c-sym', 'h-sym', 'h-sym2', true);
    const ips = [r.ia, r.ib].map((i) => i.remoteAddress.split(':')[0]);
    t.true(ips.includes('203.0.113.1'), `one side sees a relayed address: ${ips}`);
    await connection(t, 'c-sym-rev', 'h-sym2', 'h-sym', true);
  });

  test.serial('connectP2P failures: nobody listening on the virtual port, peer not registered', async (t) => {
    const a = await startSockets('h-pub', 'str:c-fail-a');
    const b = await startSockets('h-pub2', 'str:c-fail-b', { listen: VPORT });
    for (const [to, vport, reason, text] of [
      [b.identity, VPORT + 1, 5001, /not listening on virtual port 8/],
      ['str:nobody', VPORT, 5008, /not registered/],
    ]) {
      const t0 = Date.now();
      const { conn } = await a.cmd({ cmd: 'connect', to, vport });
      const f = await a.waitFor((e) => e.event === 'ended' && e.conn === conn, 5000, 'the failure');
      const ms = f.at - t0;
      t.log(`connectP2P to ${to} port ${vport}: ended in ${ms} ms with ${f.endReason} "${f.endDebug}"`);
      t.is(f.endReason, reason);
      t.regex(f.endDebug, text);
      t.true(ms < 2000, `${ms} ms`);
    }
    t.false(b.events.some((e) => e.event === 'connected'), "b's application accepted nothing");
    await Promise.all([a.close(), b.close()]);
  });

  /** `a` on host x sends to `to`; resolves with the sessionFailed it reports, and how long it took. */
  const failure = async (t, tag, x, to, options, y) => {
    const a = await start(host(x), `str:${tag}-a`, options);
    const b = y === undefined ? null : await start(host(y), `str:${tag}-b`, options);
    const target = to ?? b.identity;
    const t0 = Date.now();
    t.is((await a.send(target, 'hello')).result, 1, 'send accepted (the failure comes as an event)');
    const f = await a.waitFor((e) => e.event === 'failed', 12000, 'sessionFailed');
    const ms = f.at - t0;
    t.log(`${tag.padEnd(14)} failed in ${ms} ms: ${f.endReason} "${f.endDebug}"`);
    t.true(ms <= 10000, `within timeoutInitial (10 s): ${ms} ms`);
    t.is(f.remote, target);
    const info = await a.info(target);
    t.is(info.endReason, f.endReason, 'getSessionConnectionInfo has the same end');
    await Promise.all([a.close(), b?.close()]);
    return { ...f, ms };
  };

  test('peer not registered: fails at once', async (t) => {
    const f = await failure(t, 'unregistered', 'h-pub', 'str:nobody', {});
    t.is(f.endReason, 5008);
    t.regex(f.endDebug, /not registered/);
    t.true(f.ms < 2000, `${f.ms} ms`);
  });

  test('signaling down: fails at once', async (t) => {
    const f = await failure(t, 'signal-down', 'h-pub', 'str:somebody', { signaling: `ws://${SIGNAL_HOST}:8099` });
    t.is(f.endReason, 5008);
    t.regex(f.endDebug, /signaling unavailable/);
    t.true(f.ms < 2000, `${f.ms} ms`);
  });

  test('STUN unreachable, no TURN, both behind NATs: fails, saying STUN did not answer', async (t) => {
    const f = await failure(t, 'stun-down', 'h-port', undefined, { stunServers: [NOBODY], turnServers: [] }, 'h-port2');
    t.regex(f.endDebug, /STUN/);
  });

  test('TURN unreachable, symmetric vs symmetric: fails, saying TURN did not answer', async (t) => {
    const f = await failure(t, 'turn-down', 'h-sym', undefined, { turnServers: [{ ...TURN, address: NOBODY }] }, 'h-sym2');
    t.regex(f.endDebug, /TURN/);
  });

  test('wrong TURN password, symmetric vs symmetric: fails, saying TURN refused us', async (t) => {
    const f = await failure(t, 'turn-password', 'h-sym', undefined, { turnServers: [{ ...TURN, password: 'wrong' }] }, 'h-sym2');
    t.regex(f.endDebug, /TURN/);
    t.regex(f.endDebug, /401|nauthori[sz]ed|credentials|password/i);
  });
}
