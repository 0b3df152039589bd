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
  try {
    process.exitCode = await mod.main(argv);
  } catch (e) {
    // A mistake (UsageError, a bad option, a file that is not there) is one line, not a
    // stack trace; NETMESSAGES_DEBUG=1 shows the trace.
    process.stderr.write(`netmessages ${name}: ${e?.message ?? e}\n`);
    if (process.env.NETMESSAGES_DEBUG) process.stderr.write(`${e?.stack}\n`);
    process.exitCode = e?.name === 'UsageError' || e?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? 2 : 1;
  }
}
