// A small internet made of Linux network namespaces, for the P2P tests.
//
//   pub (bridge "inet", 203.0.113.0/24 and 2001:db8::/64): the public network. Its own
//   namespace holds the servers (203.0.113.1, .2 and 2001:db8::1: coturn for STUN/TURN, later
//   the signaling server); public hosts (IPv4 and IPv6) and the NAT routers' WAN sides plug
//   into its bridge.
//
//   router <name>: WAN 203.0.113.(10+i) on the bridge, LAN bridge 10.i.0.1/24 with hosts
//   10.i.0.2, .3, ... behind it; the NAT type is made with iptables:
//     full-cone     static SNAT + DNAT of the one LAN host (any outside host may send in)
//     address-restricted  the same mapping, plus a FORWARD filter admitting only source IPs
//                   the host has sent to (xt_recent)
//     port-restricted  MASQUERADE (Linux keeps the source port, so the mapping is
//                   endpoint-independent) + conntrack filtering (only the exact ip:port the
//                   host sent to gets in)
//     symmetric     MASQUERADE --random-fully: a new random port per destination
//
// Every name starts with `nmp2p-<pid>-`, so cleanupLeftovers() can remove what a crashed run
// left behind (its pid is gone). Nothing connects to the root namespace: traffic stays
// between namespaces this module created. Needs root, `ip` (iproute2) and `iptables`.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

const PREFIX = 'nmp2p';

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

function tryRun(cmd, args) {
  try {
    return run(cmd, args);
  } catch {
    return null;
  }
}

/** Why network namespaces cannot be used here, or null if they can. */
export function netnsUnavailable() {
  if (process.platform !== 'linux') return 'not Linux';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'not root (network namespaces need CAP_SYS_ADMIN)';
  if (tryRun('ip', ['-V']) === null) return 'iproute2 (`ip`) is not installed';
  if (tryRun('iptables', ['--version']) === null) return 'iptables is not installed (apt-get install iptables)';
  const probe = `${PREFIX}-${process.pid}-probe`;
  if (tryRun('ip', ['netns', 'add', probe]) === null) return '`ip netns add` failed (no permission for network namespaces?)';
  tryRun('ip', ['netns', 'del', probe]);
  return null;
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

function killNamespaceProcesses(ns) {
  const pids = (tryRun('ip', ['netns', 'pids', ns]) ?? '').split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Removes namespaces left by runs whose process is gone. Returns their names. */
export function cleanupLeftovers() {
  const removed = [];
  const list = tryRun('ip', ['netns', 'list']) ?? '';
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0];
    const m = new RegExp(`^${PREFIX}-(\\d+)-`).exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    killNamespaceProcesses(name);
    tryRun('ip', ['netns', 'del', name]);
    removed.push(name);
  }
  return removed;
}

export const NAT_TYPES = ['full-cone', 'address-restricted', 'port-restricted', 'symmetric'];

/** A line-oriented child process (the p2p_probe) inside a namespace. */
export class Probe {
  constructor(child) {
    this.child = child;
    this.lines = [];
    this.waiters = [];
    this.stderr = '';
    createInterface({ input: child.stdout }).on('line', (l) => {
      const w = this.waiters.shift();
      if (w) w(l);
      else this.lines.push(l);
    });
    child.stderr.on('data', (d) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => child.on('exit', resolve));
  }

  /** Sends one command; resolves with the parsed reply `{ ok, text, ...fields }`. */
  async cmd(line, timeoutMs = 20000) {
    this.child.stdin.write(`${line}\n`);
    const reply = await new Promise((resolve, reject) => {
      const l = this.lines.shift();
      if (l !== undefined) return resolve(l);
      const timer = setTimeout(() => reject(new Error(`probe: no reply to "${line}" in ${timeoutMs} ms ${this.stderr}`)), timeoutMs);
      this.waiters.push((x) => {
        clearTimeout(timer);
        resolve(x);
      });
      this.exited.then((code) => reject(new Error(`probe exited (${code}) before replying to "${line}": ${this.stderr}`)));
    });
    const [status, ...rest] = reply.split(' ');
    const out = { ok: status === 'ok', text: rest.join(' ') };
    for (const kv of rest) {
      const i = kv.indexOf('=');
      if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
    }
    return out;
  }

  close() {
    this.child.stdin.end();
    this.child.kill('SIGKILL');
  }
}

export class Internet {
  constructor() {
    this.tag = `${PREFIX}-${process.pid}-${Math.random().toString(16).slice(2, 6)}`;
    this.namespaces = [];
    this.children = [];
    this.routers = new Map();
    this.hosts = new Map();
    this.nextRouter = 1;
    this.nextPublic = 100;
    this.pub = this.ns('pub');
  }

  /** The full name of namespace `short`. */
  ns(short) {
    return `${this.tag}-${short}`;
  }

  exec(ns, cmd, args) {
    return run('ip', ['netns', 'exec', ns, cmd, ...args]);
  }

  addNamespace(short) {
    const name = this.ns(short);
    run('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** Creates the public network: the pub namespace with its bridge and server addresses. */
  up() {
    this.addNamespace('pub');
    run('ip', ['-n', this.pub, 'link', 'add', 'inet', 'type', 'bridge']);
    run('ip', ['-n', this.pub, 'link', 'set', 'inet', 'up']);
    run('ip', ['-n', this.pub, 'addr', 'add', '203.0.113.1/24', 'dev', 'inet']);
    run('ip', ['-n', this.pub, 'addr', 'add', '203.0.113.2/24', 'dev', 'inet']);
    // IPv6 on the same bridge (no NAT66: public hosts only). nodad: usable at once.
    run('ip', ['-n', this.pub, 'addr', 'add', '2001:db8::1/64', 'dev', 'inet', 'nodad']);
    return this;
  }

  /** A veth from namespace `ns` (named `ifname`) into the public bridge. */
  plugIntoInternet(ns, ifname, cidr) {
    const outer = `p${this.namespaces.length}${ifname}`.slice(0, 15);
    run('ip', ['-n', this.pub, 'link', 'add', outer, 'type', 'veth', 'peer', 'name', ifname, 'netns', ns]);
    run('ip', ['-n', this.pub, 'link', 'set', outer, 'master', 'inet']);
    run('ip', ['-n', this.pub, 'link', 'set', outer, 'up']);
    run('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', ifname]);
    run('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
  }

  /** A host directly on the public network with IPv6 only (no IPv4 address but loopback). */
  addPublicHostV6(short) {
    const ns = this.addNamespace(short);
    const n = this.nextPublic++;
    const ip6 = `2001:db8::${n}`;
    const outer = `p${this.namespaces.length}eth0`.slice(0, 15);
    run('ip', ['-n', this.pub, 'link', 'add', outer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    run('ip', ['-n', this.pub, 'link', 'set', outer, 'master', 'inet']);
    run('ip', ['-n', this.pub, 'link', 'set', outer, 'up']);
    run('ip', ['-n', ns, 'addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad']);
    run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    const host = { name: short, ns, ip: null, ip6, router: null };
    this.hosts.set(short, host);
    return host;
  }

  /** A host directly on the public network. */
  addPublicHost(short) {
    const ns = this.addNamespace(short);
    const n = this.nextPublic++;
    const ip = `203.0.113.${n}`;
    const ip6 = `2001:db8::${n}`;
    this.plugIntoInternet(ns, 'eth0', `${ip}/24`);
    run('ip', ['-n', ns, 'addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad']);
    const host = { name: short, ns, ip, ip6, router: null };
    this.hosts.set(short, host);
    return host;
  }

  /** A NAT router of `type` (see NAT_TYPES) with an empty LAN. */
  addRouter(short, type) {
    if (!NAT_TYPES.includes(type)) throw new Error(`unknown NAT type ${type}`);
    const i = this.nextRouter++;
    const ns = this.addNamespace(short);
    const wanIp = `203.0.113.${10 + i}`;
    this.plugIntoInternet(ns, 'wan', `${wanIp}/24`);
    run('ip', ['-n', ns, 'link', 'add', 'lan', 'type', 'bridge']);
    run('ip', ['-n', ns, 'addr', 'add', `10.${i}.0.1/24`, 'dev', 'lan']);
    run('ip', ['-n', ns, 'link', 'set', 'lan', 'up']);
    this.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    const router = { name: short, ns, type, wanIp, lanPrefix: `10.${i}.0`, nextHost: 2, hosts: [] };
    this.routers.set(short, router);
    return router;
  }

  /** A host on `router`'s LAN; the NAT rules are (re)written for it. */
  addHost(short, routerName) {
    const r = this.routers.get(routerName);
    const ns = this.addNamespace(short);
    const ip = `${r.lanPrefix}.${r.nextHost++}`;
    const outer = `l${this.namespaces.length}`.slice(0, 15);
    run('ip', ['-n', r.ns, 'link', 'add', outer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    run('ip', ['-n', r.ns, 'link', 'set', outer, 'master', 'lan']);
    run('ip', ['-n', r.ns, 'link', 'set', outer, 'up']);
    run('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    run('ip', ['-n', ns, 'route', 'add', 'default', 'via', `${r.lanPrefix}.1`]);
    const host = { name: short, ns, ip, router: r };
    r.hosts.push(host);
    this.hosts.set(short, host);
    this.writeNat(r);
    return host;
  }

  writeNat(r) {
    const ipt = (...args) => this.exec(r.ns, 'iptables', args);
    ipt('-t', 'nat', '-F');
    ipt('-F');
    const first = r.hosts[0].ip;
    // Unsolicited datagrams to the router itself are dropped before their conntrack entry is
    // confirmed: otherwise a peer's early punch leaves an entry that makes MASQUERADE pick
    // another port for our own later packet to that peer (as real home routers do not).
    ipt('-A', 'INPUT', '-i', 'wan', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'DROP');
    const filterInbound = (extra = []) => {
      ipt('-A', 'FORWARD', '-i', 'wan', '-o', 'lan', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT');
      for (const rule of extra) ipt('-A', 'FORWARD', ...rule);
      ipt('-A', 'FORWARD', '-i', 'wan', '-o', 'lan', '-j', 'DROP');
    };
    switch (r.type) {
      case 'full-cone':
        ipt('-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-s', first, '-j', 'SNAT', '--to-source', r.wanIp);
        ipt('-t', 'nat', '-A', 'PREROUTING', '-i', 'wan', '-d', r.wanIp, '-j', 'DNAT', '--to-destination', first);
        ipt('-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-j', 'MASQUERADE');
        break;
      case 'address-restricted':
        ipt('-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-s', first, '-j', 'SNAT', '--to-source', r.wanIp);
        ipt('-t', 'nat', '-A', 'PREROUTING', '-i', 'wan', '-d', r.wanIp, '-j', 'DNAT', '--to-destination', first);
        ipt('-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-j', 'MASQUERADE');
        ipt('-A', 'FORWARD', '-i', 'lan', '-o', 'wan', '-m', 'recent', '--name', 'contacted', '--rdest', '--set', '-j', 'ACCEPT');
        filterInbound([['-i', 'wan', '-o', 'lan', '-m', 'recent', '--name', 'contacted', '--rsource', '--rcheck', '--seconds', '300', '-j', 'ACCEPT']]);
        break;
      case 'port-restricted':
        ipt('-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-j', 'MASQUERADE');
        filterInbound();
        break;
      case 'symmetric':
        ipt('-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-j', 'MASQUERADE', '--random-fully');
        filterInbound();
        break;
      default:
        throw new Error(r.type);
    }
  }

  /** Spawns `cmd` inside namespace `ns`; killed by down(). */
  spawn(ns, cmd, args, opts = {}) {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
    this.children.push(child);
    return child;
  }

  /** The p2p_probe at `path` inside `host`'s namespace. */
  probe(host, path) {
    return new Probe(this.spawn(host.ns, path, []));
  }

  /**
   * coturn in the pub namespace on 203.0.113.1, .2 and 2001:db8::1 port 3478 (STUN on all,
   * TURN relaying from 203.0.113.1 and 2001:db8::1), long-term credentials for `users` ({ name: password }). Resolves when it answers.
   */
  async startCoturn(users, extra = []) {
    const dir = `/tmp/${this.tag}-coturn`;
    run('mkdir', ['-p', dir]);
    const args = ['-n', '--no-tls', '--no-dtls', '--no-cli', '--no-tcp-relay', '--fingerprint',
      '--listening-ip', '203.0.113.1', '--listening-ip', '203.0.113.2', '--listening-ip', '2001:db8::1',
      '--listening-port', '3478', '--relay-ip', '203.0.113.1', '--relay-ip', '2001:db8::1', '--lt-cred-mech', '--realm', 'netmessages.test',
      `--userdb=${dir}/turndb`, `--pidfile=${dir}/pid`, '--log-file', 'stdout', '--simple-log',
      // The test bed's addresses are documentation and private ranges; coturn may relay to them.
      '--allowed-peer-ip', '10.0.0.0-10.255.255.255', '--allowed-peer-ip', '203.0.113.0-203.0.113.255',
      '--allowed-peer-ip', '2001:db8::-2001:db8::ffff',
      ...Object.entries(users).flatMap(([u, p]) => ['--user', `${u}:${p}`]), ...extra];
    const child = this.spawn(this.pub, 'turnserver', args);
    let log = '';
    child.stdout.on('data', (d) => {
      log += d;
    });
    this.coturnLog = () => log;
    // Ready when something listens on 3478 in pub.
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      const ss = tryRun('ip', ['netns', 'exec', this.pub, 'ss', '-uln']) ?? '';
      if (ss.includes('203.0.113.1:3478') && ss.includes('203.0.113.2:3478') && ss.includes('[2001:db8::1]:3478')) return child;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`coturn did not start: ${log}`);
  }

  /**
   * Counts what coturn relays: an iptables rule in pub's OUTPUT matching UDP from the relay
   * address 203.0.113.1 (every datagram coturn sends out of an allocation or to a client).
   * Returns an async reader of its byte counter (IP packet bytes).
   */
  relayCounter() {
    const ipt = (...args) => this.exec(this.pub, 'iptables', args);
    ipt('-I', 'OUTPUT', '1', '-s', '203.0.113.1', '-p', 'udp', '-m', 'comment', '--comment', 'nmp2p-relayed');
    return async () => {
      const { stdout } = await execFileAsync('ip', ['netns', 'exec', this.pub, 'iptables', '-nvxL', 'OUTPUT']);
      const line = stdout.split('\n').find((l) => l.includes('nmp2p-relayed'));
      return line === undefined ? 0 : Number(line.trim().split(/\s+/)[1]);
    };
  }

  /** Kills every process started here and removes every namespace (and so every veth). */
  down() {
    for (const c of this.children) {
      try {
        c.kill('SIGKILL');
      } catch {
        // gone
      }
    }
    for (const ns of this.namespaces.reverse()) {
      killNamespaceProcesses(ns);
      tryRun('ip', ['netns', 'del', ns]);
    }
    this.namespaces = [];
    tryRun('rm', ['-rf', `/tmp/${this.tag}-coturn`]);
  }

  /** Names of this run's namespaces that still exist (for the teardown check). */
  remaining() {
    const list = tryRun('ip', ['netns', 'list']) ?? '';
    return list.split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(this.tag));
  }
}
