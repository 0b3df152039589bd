#!/usr/bin/env node
// Load time of a native binary: N fresh Node.js processes each time `require(binary)` (the
// dlopen, relocations and the addon's module init) with process.hrtime, and the median, min
// and max are printed, with the file's size. docs/PLATFORMS.md quotes its output.
//
// Usage: node scripts/measure-load.mjs <binary.node> [runs=21] [-- <command prefix to run node>]
//   e.g. node scripts/measure-load.mjs native/netmessages.linux-x64-gnu.node
//        node scripts/measure-load.mjs x.node 11 -- qemu-aarch64-static -L /usr/aarch64-linux-gnu /path/to/arm64/node
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';

const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
const [binary, runsArg] = sep < 0 ? argv : argv.slice(0, sep);
const prefix = sep < 0 ? [process.execPath] : argv.slice(sep + 1);
if (!binary) {
  console.error('usage: node scripts/measure-load.mjs <binary.node> [runs] [-- node command]');
  process.exit(2);
}
const runs = Number(runsArg ?? 21);
const file = path.resolve(binary);
const code = `const t = process.hrtime.bigint(); require(${JSON.stringify(file)}); console.log(Number(process.hrtime.bigint() - t) / 1e6);`;
const times = [];
for (let i = 0; i < runs; i++) {
  const r = spawnSync(prefix[0], [...prefix.slice(1), '-e', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`run ${i}: ${r.stderr}`);
  times.push(Number(r.stdout.trim()));
}
times.sort((a, b) => a - b);
const ms = (x) => x.toFixed(2);
console.log(`${path.basename(file)}: ${statSync(file).size} B, load median ${ms(times[runs >> 1])} ms (min ${ms(times[0])}, max ${ms(times[runs - 1])}, ${runs} runs)`);
