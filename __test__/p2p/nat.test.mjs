// The network-namespace test bed, proven: from behind each NAT type our STUN binding client
// (netcore, through the p2p_probe) sees the mapping the NAT gives; cone NATs hole-punch with
// plain UDP and symmetric against symmetric (or port-restricted) cannot; and netcore's TURN
// client relays between two symmetric NATs through coturn, the fallback that motivates TURN.
//
// Needs root, iproute2, iptables and coturn; skips (saying why) otherwise. Run with
// `npm run test:p2p`.
import test from 'ava';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Internet, cleanupLeftovers, netnsUnavailable } from './netns.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const probePath = join(root, 'target', 'debug', 'examples', 'p2p_probe');

function unavailable() {
  const why = netnsUnavailable();
  if (why) return why;
  try {
    execFileSync('turnserver', ['--help'], { stdio: 'ignore' });
  } catch (e) {
    if (e.code === 'ENOENT') return 'turnserver (coturn) is not installed: apt-get install coturn';
  }
  if (!existsSync(probePath)) return `${probePath} is missing: cargo build -p netdriver --example p2p_probe`;
  return null;
}

const skip = unavailable();
if (skip) {
  test('network-namespace NAT test bed', (t) => {
    t.log(`SKIP: ${skip}`);
    t.pass();
  });
} else {
  const left = cleanupLeftovers();
  const net = new Internet();
  const ROUTERS = {
    full: 'full-cone',
    addr: 'address-restricted',
    port: 'port-restricted',
    port2: 'port-restricted',
    sym: 'symmetric',
    sym2: 'symmetric',
  };
  const probes = new Map();
  const STUN1 = '203.0.113.1:3478';
  const STUN2 = '203.0.113.2:3478';
  const STUN6 = '[2001:db8::1]:3478';

  test.before(async (t) => {
    if (left.length) t.log(`removed leftovers: ${left.join(', ')}`);
    const start = Date.now();
    net.up();
    await net.startCoturn({ alice: 'secret', bob: 'hunter2' });
    for (const [name, type] of Object.entries(ROUTERS)) {
      net.addRouter(`r-${name}`, type);
      net.addHost(`h-${name}`, `r-${name}`);
    }
    net.addHost('h-lan2', 'r-port');
    net.addPublicHost('h-public');
    net.addPublicHost('h-public2');
    for (const [name, host] of net.hosts) {
      const p = net.probe(host, probePath);
      const b = await p.cmd('bind 0.0.0.0:40000');
      if (!b.ok) throw new Error(`${name}: ${b.text}`);
      probes.set(name.slice(2), { probe: p, host });
    }
    t.log(`test bed up in ${Date.now() - start} ms: ${net.namespaces.length} namespaces`);
  });

  test.after.always((t) => {
    for (const { probe } of probes.values()) probe.close();
    net.down();
    t.deepEqual(net.remaining(), [], 'every namespace removed');
  });

  const mapping = async (name) => {
    const { probe } = probes.get(name);
    const a = await probe.cmd(`stun ${STUN1}`);
    const b = await probe.cmd(`stun ${STUN2}`);
    return { a, b };
  };

  test.serial('our STUN client sees the mapping each NAT type gives', async (t) => {
    const pub = await mapping('public');
    t.true(pub.a.ok, pub.a.text);
    t.is(pub.a.mapped, `${probes.get('public').host.ip}:40000`, 'no NAT: mapped is the host address');
    for (const name of ['full', 'addr', 'port', 'sym']) {
      const r = net.routers.get(`r-${name}`);
      const { a, b } = await mapping(name);
      t.true(a.ok && b.ok, `${name}: ${a.text} / ${b.text}`);
      const [ipA, portA] = a.mapped.split(':');
      const [ipB, portB] = b.mapped.split(':');
      t.is(ipA, r.wanIp, `${name}: mapped to the router's WAN address`);
      t.is(ipB, r.wanIp);
      if (name === 'sym') {
        t.not(portA, portB, 'symmetric NAT: a different mapping per destination');
      } else {
        t.is(portA, portB, `${name}: endpoint-independent mapping`);
        t.is(portA, '40000', `${name}: source port preserved`);
      }
      t.log(`${r.type.padEnd(18)} ${STUN1} sees ${a.mapped} (rtt ${a.rtt_us} us), ${STUN2} sees ${b.mapped}`);
    }
  });

  // Both sides learn their mapping from STUN1, then send to each other's at the same time.
  const punch = async (x, y) => {
    const px = probes.get(x).probe;
    const py = probes.get(y).probe;
    const mx = (await px.cmd(`stun ${STUN1}`)).mapped;
    const my = (await py.cmd(`stun ${STUN1}`)).mapped;
    const [rx, ry] = await Promise.all([px.cmd(`punch ${my} 1500`), py.cmd(`punch ${mx} 1500`)]);
    return { ok: Number(rx.received) > 0 && Number(ry.received) > 0, rx, ry };
  };

  const expectations = [
    ['full', 'port', true],
    ['addr', 'port', true],
    ['port', 'port2', true],
    ['full', 'sym', true],
    ['addr', 'sym', true],
    ['port', 'sym', false],
    ['sym', 'sym2', false],
  ];
  test.serial('cone NATs hole-punch with plain UDP, symmetric against symmetric cannot', async (t) => {
    for (const [x, y, want] of expectations) {
      const start = Date.now();
      const r = await punch(x, y);
      t.log(`${x.padEnd(5)} <-> ${y.padEnd(5)} ${r.ok ? 'punched' : 'blocked'} (${x} got ${r.rx.received} from ${r.rx.from}, ${y} got ${r.ry.received} from ${r.ry.from}; ${Date.now() - start} ms)`);
      t.is(r.ok, want, `${x} <-> ${y}`);
    }
  });

  test.serial('TURN relays between two symmetric NATs where punching fails', async (t) => {
    const a = probes.get('sym').probe;
    const b = probes.get('sym2').probe;
    const start = Date.now();
    const alloc = await a.cmd(`turn ${STUN1} alice secret`);
    t.true(alloc.ok, alloc.text);
    t.log(`allocated ${alloc.relayed} (mapped ${alloc.mapped}) in ${Date.now() - start} ms through a symmetric NAT`);
    // Permissions are per IP: b's router's WAN address, whatever port its NAT picks.
    const bWan = net.routers.get('r-sym2').wanIp;
    const perm = await a.cmd(`permit ${bWan}`);
    t.true(perm.ok, perm.text);
    const [echo, ping] = await Promise.all([a.cmd('relay-echo 3000'), b.cmd(`ping ${alloc.relayed} 2500`)]);
    t.is(ping.answered, '1', 'b reached a through the relay and got the echo');
    t.true(Number(echo.echoed) >= 1);
    t.is(echo.from.split(':')[0], bWan);
    t.log(`relayed round trip in ${Number(ping.after_us) / 1000} ms; a echoed ${echo.echoed} datagrams from ${echo.from}`);

    const wrong = await b.cmd(`turn ${STUN1} bob wrong-password`);
    t.false(wrong.ok);
    t.regex(wrong.text, /wrong username or password/);
  });

  // Each side gathers on a fresh socket (host, STUN and a TURN allocation on coturn), they
  // swap candidates and credentials (what signaling will carry), and run ICE.
  let port = 41000;
  const ice = async (ctl, ctd, v6 = false) => {
    const sides = [ctl, ctd].map((name, i) => ({ name, probe: probes.get(name).probe, host: probes.get(name).host, ufrag: `U${i}${port % 1000}`.padEnd(5, 'x'), pwd: `pw-${name}-${port}-0123456789abcdef` }));
    port++;
    const gathered = await Promise.all(sides.map(async (s) => {
      const b = await s.probe.cmd(v6 ? `bind [${s.host.ip6}]:${port}` : `bind 0.0.0.0:${port}`);
      if (!b.ok) throw new Error(b.text);
      const server = v6 ? STUN6 : STUN1;
      const g = await s.probe.cmd(v6 ? `gather ${s.host.ip6}/64 ${server} ${server} alice secret` : `gather ${s.host.ip}/24 ${server} ${server} alice secret`);
      if (!g.ok) throw new Error(`${s.name}: ${g.text}`);
      return g;
    }));
    const [a, b] = sides;
    const start = Date.now();
    const [ra, rb] = await Promise.all([
      a.probe.cmd(`ice controlling ${a.ufrag} ${a.pwd} ${b.ufrag} ${b.pwd} 6000 ${gathered[1].candidates}`),
      b.probe.cmd(`ice controlled ${b.ufrag} ${b.pwd} ${a.ufrag} ${a.pwd} 6000 ${gathered[0].candidates}`),
    ]);
    const cands = (g) => Buffer.from(g.candidates, 'hex').toString().split('\n').map((l) => l.split(' ')[7]).join('+');
    return { ra, rb, wall: Date.now() - start, kinds: gathered.map(cands) };
  };

  const iceScenarios = [
    ['port', 'lan2', 'ProbablyLocal'],
    ['public', 'sym', 'Udp'],
    ['full', 'sym', 'Udp'],
    ['port', 'port2', 'Udp'],
    ['addr', 'port', 'Udp'],
    ['port', 'sym', 'Relayed'],
    ['sym', 'sym2', 'Relayed'],
  ];
  test.serial('ICE picks the direct path where one exists and the TURN relay where not, both ways', async (t) => {
    for (const [x, y, want] of iceScenarios) {
      for (const [ctl, ctd] of [[x, y], [y, x]]) {
        const r = await ice(ctl, ctd);
        t.true(r.ra.ok && r.rb.ok, `${ctl} -> ${ctd}: ${r.ra.text} / ${r.rb.text}`);
        t.is(r.ra.route, want, `${ctl} (controlling) -> ${ctd}: ${r.ra.text}`);
        t.is(r.rb.route, want, `${ctd} (controlled) <- ${ctl}: ${r.rb.text}`);
        t.log(`${ctl.padEnd(6)} -> ${ctd.padEnd(6)} ${String(r.ra.route).padEnd(13)} via ${r.ra.via}/${r.rb.via}, selected after ${r.ra.after_ms} / ${r.rb.after_ms} ms (candidates ${r.kinds.join(' | ')})`);
      }
    }
  });

  test.serial('IPv6: STUN sees the public address, ICE connects two IPv6 hosts, TURN allocates over IPv6', async (t) => {
    const p = probes.get('public2');
    const b = await p.probe.cmd(`bind [${p.host.ip6}]:40006`);
    t.true(b.ok, b.text);
    const m = await p.probe.cmd(`stun ${STUN6}`);
    t.is(m.mapped, `[${p.host.ip6}]:40006`, m.text);
    for (const [ctl, ctd] of [['public', 'public2'], ['public2', 'public']]) {
      const r = await ice(ctl, ctd, true);
      t.true(r.ra.ok && r.rb.ok, `${r.ra.text} / ${r.rb.text}`);
      t.is(r.ra.route, 'Udp');
      t.regex(r.ra.remote, /^\[2001:db8::/);
      t.true(r.kinds.every((k) => k.includes('relay')), `an IPv6 relayed candidate on both sides: ${r.kinds}`);
      t.log(`${ctl} -> ${ctd} over IPv6: ${r.ra.route} to ${r.ra.remote}, selected after ${r.ra.after_ms} / ${r.rb.after_ms} ms (candidates ${r.kinds.join(' | ')})`);
    }
  });
}
