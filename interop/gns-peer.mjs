// Drives interop/gns-peer (our C++ program on GameNetworkingSockets) from Node: one child
// process per peer, JSON commands to its stdin, JSON events from its stdout. Used by the
// interop tests (__test__/interop/) and interop/throughput.mjs.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

/** GNS's connection states (ESteamNetworkingConnectionState). */
export const GnsState = { None: 0, Connecting: 1, FindingRoute: 2, Connected: 3, ClosedByPeer: 4, ProblemDetectedLocally: 5 };

/** GNS's debug output levels (ESteamNetworkingSocketsDebugOutputType). */
export const GnsLog = { Bug: 1, Error: 2, Important: 3, Warning: 4, Msg: 5, Verbose: 6, Debug: 7, Everything: 8 };

// ------------------------------------------------------------------ payload pattern
// The same pattern as peer.cpp: bytes 0..3 the sequence number, 4..7 the seed (both LE), the
// rest a function of both and of the position, so a receiver can check a body on its own.

function patternByte(seq, seed, k) {
  let x = (Math.imul(seed, 2654435761 | 0) + Math.imul(seq, 40503) + Math.imul(k, 2246822519 | 0)) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  return x & 0xff;
}

/** A message body of `size` bytes carrying `seq` and `seed`. */
export function makeBody(seq, seed, size) {
  const b = Buffer.allocUnsafe(size);
  for (let k = 0; k < size; k++) b[k] = patternByte(seq >>> 0, seed >>> 0, k);
  if (size >= 8) {
    b.writeUInt32LE(seq >>> 0, 0);
    b.writeUInt32LE(seed >>> 0, 4);
  }
  return b;
}

/** `{ ok, seq, seed }` for a received body (bodies under 8 bytes are checked with 0, 0). */
export function checkBody(buf) {
  const n = buf.length;
  const seq = n >= 8 ? buf.readUInt32LE(0) : 0;
  const seed = n >= 8 ? buf.readUInt32LE(4) : 0;
  for (let k = n >= 8 ? 8 : 0; k < n; k++) {
    if (buf[k] !== patternByte(seq, seed, k)) return { ok: false, seq, seed };
  }
  return { ok: true, seq, seed };
}

/** A UDP port on 127.0.0.1 that was free a moment ago (GNS's listen sockets need a port). */
export async function freeUdpPort() {
  const s = dgram.createSocket('udp4');
  await new Promise((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', resolve);
  });
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

// ------------------------------------------------------------------ the peer process

/**
 * One gns-peer process. `events` holds every event it reported (log lines included); waits
 * look at what is there already and at what comes later.
 */
export class GnsPeer {
  /**
   * Starts the program and initializes GNS.
   * @param {string} binary path of gns-peer (from ensureGnsPeer)
   * @param {object} init the init command's fields: mode ('messages' | 'raw'), identity,
   *   logLevel, global (config by GNS name), hdrFlags, autoAccept, autoClose, recvEvents
   * @param {{ logFile?: string, name?: string }} opts logFile receives every event as a line
   */
  static async start(binary, init = {}, opts = {}) {
    const p = new GnsPeer(binary, opts);
    await p.request({ cmd: 'init', logLevel: GnsLog.Msg, ...init }, 'ready', 10000);
    return p;
  }

  constructor(binary, opts) {
    this.name = opts.name ?? 'gns';
    this.logFile = opts.logFile;
    if (this.logFile) {
      mkdirSync(path.dirname(this.logFile), { recursive: true });
      writeFileSync(this.logFile, '');
    }
    this.events = [];
    this.waiters = [];
    this.nextId = 1;
    this.exited = null;
    this.child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdin.on('error', () => {});
    readline.createInterface({ input: this.child.stdout }).on('line', (line) => {
      let e;
      try {
        e = JSON.parse(line);
      } catch {
        e = { ev: 'garbage', line };
      }
      this.#push(e);
    });
    readline.createInterface({ input: this.child.stderr }).on('line', (line) => this.#push({ ev: 'stderr', msg: line }));
    this.child.on('exit', (code, signal) => {
      this.exited = { code, signal };
      this.#push({ ev: 'exit', code, signal });
    });
  }

  #push(e) {
    this.events.push(e);
    if (this.logFile) appendFileSync(this.logFile, `${JSON.stringify(e)}\n`);
    for (let i = 0; i < this.waiters.length; ) {
      const w = this.waiters[i];
      if (w.pred(e)) {
        this.waiters.splice(i, 1);
        w.resolve(e);
      } else if (e.ev === 'exit' && !w.allowExit) {
        this.waiters.splice(i, 1);
        w.reject(new Error(`${this.name} exited (${e.code ?? e.signal}) while waiting for ${w.what}`));
      } else i++;
    }
  }

  /** Writes one command; returns its id. */
  send(cmd) {
    const id = cmd.id ?? this.nextId++;
    if (this.exited === null) this.child.stdin.write(`${JSON.stringify({ ...cmd, id })}\n`);
    return id;
  }

  /**
   * The first event (already seen or to come) for which `pred` is true; rejects after `ms`.
   * `from` skips the events before that index.
   */
  waitFor(pred, ms = 10000, what = 'an event', { from = 0, allowExit = false } = {}) {
    for (let i = from; i < this.events.length; i++) if (pred(this.events[i])) return Promise.resolve(this.events[i]);
    if (this.exited !== null && !allowExit) return Promise.reject(new Error(`${this.name} has exited; no ${what}`));
    return new Promise((resolve, reject) => {
      const w = { pred, what, allowExit };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`${this.name}: no ${what} within ${ms} ms`));
      }, ms);
      w.resolve = (e) => (clearTimeout(timer), resolve(e));
      w.reject = (e) => (clearTimeout(timer), reject(e));
      this.waiters.push(w);
    });
  }

  /** Sends a command and waits for its reply event (`ev`), or rejects on its error event. */
  async request(cmd, ev, ms = 10000) {
    const id = this.send(cmd);
    const e = await this.waitFor((x) => x.id === id && (x.ev === ev || x.ev === 'error'), ms, `'${ev}' for ${cmd.cmd}`);
    if (e.ev === 'error') throw new Error(`${this.name} ${cmd.cmd}: ${e.msg}`);
    return e;
  }

  /** Opens a listen socket on 127.0.0.1 (a free port unless given); returns its port. */
  async listen(config = {}, port) {
    const p = port ?? (await freeUdpPort());
    const e = await this.request({ cmd: 'listen', addr: `127.0.0.1:${p}`, config }, 'listening');
    return e.port;
  }

  /** Starts a connection; returns its handle. */
  async connect(addr, config = {}) {
    return (await this.request({ cmd: 'connect', addr, config }, 'connecting')).conn;
  }

  /** Waits until `conn` reaches `state` (a GnsState); returns the status event. */
  waitState(conn, state, ms = 10000) {
    return this.waitFor((e) => e.ev === 'status' && (conn === undefined || e.conn === conn) && e.state === state, ms, `connection ${conn ?? '(any)'} in state ${state}`);
  }

  /** Waits for the first connection that reaches Connected; returns its handle. */
  async waitConnected(conn, ms = 10000) {
    return (await this.waitState(conn, GnsState.Connected, ms)).conn;
  }

  /**
   * Sends `count` messages: pattern bodies of `size` bytes with seq = seq.. and `seed`, or
   * `data` (Buffer) / `text` as they are. Returns the 'sent' event ({ ok, failures, first, last }).
   */
  sendMessages(conn, { count = 1, size = 0, flags = 8, channel = 0, lane = 0, seq = 0, seed = 0, data, text } = {}) {
    const cmd = { cmd: 'send', conn, count, size, flags, channel, lane, seq, seed };
    if (data !== undefined) cmd.data = Buffer.from(data).toString('base64');
    if (text !== undefined) cmd.text = text;
    return this.request(cmd, 'sent');
  }

  /** The 'msg' events so far that match `pred`. */
  messages(pred = () => true) {
    return this.events.filter((e) => e.ev === 'msg' && pred(e));
  }

  /** Waits until `count` 'msg' events match `pred`; returns them. */
  async waitMessages(count, pred = () => true, ms = 10000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const got = this.messages(pred);
      if (got.length >= count) return got;
      if (this.exited !== null) throw new Error(`${this.name} exited with ${got.length}/${count} messages received`);
      if (Date.now() > deadline) throw new Error(`${this.name}: ${got.length}/${count} messages within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** GetConnectionRealTimeStatus + GetConnectionInfo (+ the detailed text when `detail`). */
  status(conn, { lanes = 0, detail = false } = {}) {
    return this.request({ cmd: 'status', conn, lanes, detail }, 'stats');
  }

  close(conn, reason = 0, debug = '', linger = false) {
    return this.request({ cmd: 'close', conn, reason, debug, linger }, 'closed');
  }

  lanes(conn, priorities, weights) {
    return this.request({ cmd: 'lanes', conn, priorities, weights }, 'lanes');
  }

  setConfig(config, conn) {
    return this.request(conn === undefined ? { cmd: 'setConfig', config } : { cmd: 'setConfig', conn, config }, 'configSet');
  }

  /** Sends a `size`-byte pattern message every `everyMs` until the connection is gone. */
  pump(conn, { everyMs = 100, size = 100, seed = 0, flags = 8, channel = 0 } = {}) {
    return this.request({ cmd: 'pump', conn, everyMs, size, seed, flags, channel }, 'pumping');
  }

  /** Freezes the process (SIGSTOP): its peers see silence, its socket keeps what arrives. */
  pause() {
    if (this.exited === null) this.child.kill('SIGSTOP');
  }

  /** Thaws a paused process (SIGCONT). */
  resume() {
    if (this.exited === null) this.child.kill('SIGCONT');
  }

  counters(reset = false) {
    return this.request({ cmd: 'counters', reset }, 'counters');
  }

  /** GNS's debug output lines (and the program's stderr) so far. */
  logLines() {
    return this.events.filter((e) => e.ev === 'log' || e.ev === 'stderr').map((e) => e.msg);
  }

  /** The log lines matching `re`. */
  grepLog(re) {
    return this.logLines().filter((l) => re.test(l));
  }

  /** The last `n` events as text, for a failing test's report. */
  tail(n = 40) {
    return this.events
      .slice(-n)
      .map((e) => JSON.stringify(e))
      .join('\n');
  }

  /** Stops the process as a crash would (no goodbye to its peers). */
  kill(signal = 'SIGKILL') {
    if (this.exited === null) this.child.kill(signal);
  }

  /** Quits cleanly (GNS closes its connections), or kills after `ms`. */
  async quit(ms = 3000) {
    if (this.exited !== null) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.send({ cmd: 'quit' });
    const t = setTimeout(() => this.kill(), ms);
    await gone;
    clearTimeout(t);
  }
}
