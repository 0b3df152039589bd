#!/usr/bin/env node
// The `netmessages` command: dispatches subcommands. Each subcommand module exports
// `main(argv) -> Promise<number>` (the exit code) and a one-line `summary`.
const commands = {
  loadtest: () => import('../examples/loadtest/loadtest.mjs'),
  keygen: async () => (await import('./commands/keys.mjs')).keygen,
  cert: async () => (await import('./commands/keys.mjs')).cert,
  signal: () => import('./commands/signal.mjs'),
};

function usage(out) {
  out.write('usage: netmessages <command> [options]\n\ncommands:\n');
  out.write('  loadtest   drive many sessions against a server; prints throughput, RTT percentiles and loss\n');
  out.write('  keygen     make an Ed25519 key pair (an identity key, or a CA key)\n');
  out.write('  cert       issue a certificate binding an identity to a public key, signed by a CA key\n');
  out.write('  signal     run the P2P signaling server (WebSocket; peers register identities their certificates prove)\n');
  out.write('\nRun `netmessages <command> --help` for its options.\n');
}

const [name, ...argv] = process.argv.slice(2);
if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
  usage(process.stdout);
} else if (!Object.hasOwn(commands, name)) {
  process.stderr.write(`netmessages: unknown command '${name}'\n\n`);
  usage(process.stderr);
  process.exitCode = 2;
} else {
  const mod = await commands[name]();
  process.exitCode = await mod.main(argv);
}
