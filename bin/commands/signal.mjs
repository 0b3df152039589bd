// `netmessages signal`: run the signaling server (see signal/server.mjs and docs/P2P.md).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

function readKey(value) {
  let text = value;
  try {
    text = readFileSync(value, 'utf8');
  } catch {
    // not a file: the hex itself
  }
  const hex = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error(`--trusted-ca ${value}: expected a 32-byte public key in hex (or a file holding it)`);
  return Buffer.from(hex, 'hex');
}

export const summary = 'run the P2P signaling server (WebSocket; peers register identities their certificates prove)';

export async function main(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string', default: '8080' },
      host: { type: 'string', default: '0.0.0.0' },
      'trusted-ca': { type: 'string', multiple: true },
      'app-id': { type: 'string' },
      redis: { type: 'string' },
      'max-connections': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help || !values['trusted-ca']) {
    (values.help ? process.stdout : process.stderr).write(
      'usage: netmessages signal --trusted-ca CA.pub [--trusted-ca CA2.pub] [--port 8080] [--host 0.0.0.0]\n' +
        '                          [--app-id N] [--redis redis://host:6379] [--max-connections N]\n\n' +
        'Peers register an identity by answering a challenge with the key of a certificate signed\n' +
        'by one of the trusted CAs (see `netmessages cert`), then exchange rendezvous blobs by identity.\n' +
        'With --redis, several servers share presence through Redis pub/sub (npm install redis).\n',
    );
    return values.help ? 0 : 2;
  }
  const { startSignalServer } = await import('../../signal/server.mjs');
  let adapter;
  if (values.redis) {
    const { RedisPresence } = await import('../../signal/redis.mjs');
    adapter = new RedisPresence(values.redis);
  }
  const server = await startSignalServer({
    port: Number(values.port),
    host: values.host,
    trustedCAs: values['trusted-ca'].map(readKey),
    appId: values['app-id'] === undefined ? null : Number(values['app-id']),
    maxConnections: values['max-connections'] === undefined ? undefined : Number(values['max-connections']),
    adapter,
  });
  // Handlers first: whoever reads the line below may signal us at once.
  const stopped = new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  process.stdout.write(`netmessages signal listening on ${values.host}:${server.port}${adapter ? ` (presence shared through ${values.redis})` : ''}\n`);
  await stopped;
  await server.close();
  return 0;
}
