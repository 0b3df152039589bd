// What the P2P test peers (peer.mjs: the messages model; sockets-peer.mjs: the connection
// API) share: their options from argv[2], one JSON object a line on stdout, creation that
// reports its error and exits, and the stdin command loop with its `close` command.
import { createInterface } from 'node:readline';

/** Writes one JSON line to the test. */
export const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

/** The options the test passed (argv[2], JSON). */
export const opts = JSON.parse(process.argv[2]);

const hex = (s) => Buffer.from(s, 'hex');

/** The credentials and P2P options of `create`, from `opts` (keys and CA in hex). */
export function p2pOptions() {
  return {
    identity: opts.identity,
    privateKey: hex(opts.privateKey),
    certificate: hex(opts.certificate),
    trustedCAs: [hex(opts.ca)],
    signaling: opts.signaling,
    stunServers: opts.stunServers ?? [],
    turnServers: opts.turnServers ?? [],
    config: opts.config ?? {},
  };
}

/** Runs `make`; on failure reports `{"error":...}` and exits. */
export async function create(make) {
  try {
    return await make();
  } catch (e) {
    out({ error: String(e?.stack ?? e) });
    process.exit(1);
  }
}

/**
 * Serves the test's commands: `handle(c)` answers one and returns false for a command it does
 * not know; `close` closes `instance` and exits. Errors are answered, never thrown.
 */
export function serveCommands(instance, handle) {
  createInterface({ input: process.stdin }).on('line', async (line) => {
    let c;
    try {
      c = JSON.parse(line);
    } catch {
      return;
    }
    try {
      if (c.cmd === 'close') {
        await instance.close();
        out({ id: c.id, closed: true });
        process.exit(0);
      }
      if (!(await handle(c))) out({ id: c.id, error: `unknown command ${c.cmd}` });
    } catch (e) {
      out({ id: c.id, error: String(e?.stack ?? e) });
    }
  });
}
