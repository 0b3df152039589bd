#!/usr/bin/env node
// Runs every cargo-fuzz target of crates/netcore/fuzz, one at a time, each from its committed
// seed corpus (crates/netcore/fuzz/seeds/<target>) plus the corpus earlier runs grew
// (crates/netcore/fuzz/corpus/<target>, not committed), and reports executions, coverage and
// crashes per target. Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
//
//   npm run fuzz -- --seconds 60                  every target for 60 s each
//   npm run fuzz -- --runs 10000000 --seconds 3600 --targets endpoint
//   npm run fuzz -- --seconds 30 --json target/fuzz-report.json
//   npm run fuzz:ci                               every target for 5 s; skips without nightly
//
// A crash leaves its input in crates/netcore/fuzz/artifacts/<target>/ and makes the exit code
// non-zero; turn it into a Rust unit test (see docs/RELIABILITY.md).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const crate = path.join(root, 'crates/netcore');
const fuzzDir = path.join(crate, 'fuzz');

// Build flags a target needs beyond the defaults, and the target directory it is built in
// (its own, so switching flags between targets never rebuilds the others).
// `endpoint` runs the whole state machine per input, and the trace-compares instrumentation
// (a callback on every integer comparison, feeding libFuzzer's compare-guided mutations)
// took about 40 % of its time: its input bytes are op codes read modulo small numbers and
// its datagrams start from genuine captures, while the decoders those datagrams reach are
// fuzzed with compare guidance by their own targets (datagram, frames, control, ...).
// `options` are libFuzzer options a target runs with. `endpoint` touches thousands of
// coverage features per input, and libFuzzer's default Entropic schedule updates per-feature
// frequency tables for each of them after every execution: a quarter of the target's CPU on a
// grown corpus (232 -> 165 us per execution, docs/RELIABILITY.md). `-entropic=0` falls back to
// the classic schedule (inputs picked by how many unique features they hold), which keeps every
// input that adds a feature as before; it only chooses which to mutate next differently.
// `coverage` lists the crates that get coverage counters (scripts/fuzz-rustc.sh, a
// RUSTC_WRAPPER, drops them from the others): `endpoint`'s inputs steer netcore's state
// machine, and the counters of its dependencies (RustCrypto hashes, the CSPRNG, prost's
// varints) were about 320 edges and 1,700 features libFuzzer walked after every execution.
const BUILD = {
  endpoint: {
    flags: ['--no-trace-compares'],
    targetDir: 'target/netcore-coverage',
    coverage: ['netcore', 'endpoint'],
    options: ['-entropic=0'],
  },
};

// Every target: the [[bin]] entries of the fuzz crate's Cargo.toml.
const TARGETS = [...readFileSync(path.join(fuzzDir, 'Cargo.toml'), 'utf8').matchAll(/^\[\[bin\]\]\s*\nname\s*=\s*"([^"]+)"/gm)].map((m) => m[1]);

function parseArgs(argv) {
  const o = { seconds: 60, runs: 0, targets: TARGETS, json: null, sanitizer: 'address', maxLen: 4096, ifAvailable: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--seconds') o.seconds = Number(next());
    else if (a === '--runs') o.runs = Number(next());
    else if (a === '--targets') o.targets = next().split(',').filter(Boolean);
    else if (a === '--json') o.json = next();
    else if (a === '--sanitizer') o.sanitizer = next();
    else if (a === '--max-len') o.maxLen = Number(next());
    else if (a === '--if-available') o.ifAvailable = true;
    else if (a === '--help' || a === '-h') {
      console.log('usage: npm run fuzz -- [--seconds N] [--runs N] [--targets a,b] [--sanitizer address|none] [--json FILE] [--if-available]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  for (const t of o.targets) if (!TARGETS.includes(t)) throw new Error(`unknown target ${t} (have ${TARGETS.join(', ')})`);
  if (!(o.seconds > 0)) throw new Error('--seconds must be positive');
  return o;
}

function have(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0;
}

/** Runs one target; resolves with its figures. */
function runTarget(target, o) {
  const corpus = path.join(fuzzDir, 'corpus', target);
  const seeds = path.join(fuzzDir, 'seeds', target);
  const artifacts = path.join(fuzzDir, 'artifacts', target);
  mkdirSync(corpus, { recursive: true });
  mkdirSync(artifacts, { recursive: true });
  const dirs = [corpus, ...(existsSync(seeds) ? [seeds] : [])];
  const libfuzzer = [
    `-max_total_time=${o.seconds}`,
    `-max_len=${o.maxLen}`,
    `-artifact_prefix=${artifacts}/`,
    '-print_final_stats=1',
    // One process, in the foreground (libFuzzer's -jobs=N would fork N workers and send
    // their output to fuzz-N.log): the machine is shared, and targets run one at a time.
    // So nothing else writes to the corpus directory, and libFuzzer's default re-read of it
    // every second (for parallel workers sharing one) only lists and stats thousands of
    // files: 2-3 % of `endpoint`'s CPU on a grown corpus.
    '-reload=0',
  ];
  if (o.runs > 0) libfuzzer.push(`-runs=${o.runs}`);
  const build = BUILD[target] ?? { flags: [], targetDir: null };
  libfuzzer.push(...(build.options ?? []));
  const buildArgs = [...build.flags, ...(build.targetDir ? ['--target-dir', path.join(fuzzDir, build.targetDir)] : [])];
  const args = ['+nightly', 'fuzz', 'run', '--sanitizer', o.sanitizer, ...buildArgs, target, ...dirs, '--', ...libfuzzer];
  const before = new Set(readdirSync(artifacts));
  return new Promise((resolve) => {
    const started = Date.now();
    // glibc would hand the endpoint snapshots' memory back to the kernel after every input and
    // fault it in again for the next: keep it.
    const env = { ...process.env, MALLOC_TRIM_THRESHOLD_: '1073741824', MALLOC_MMAP_THRESHOLD_: '33554432', MALLOC_TOP_PAD_: '67108864' };
    if (build.coverage) {
      env.RUSTC_WRAPPER = path.join(root, 'scripts/fuzz-rustc.sh');
      env.NETCORE_FUZZ_COVERAGE_CRATES = build.coverage.join(',');
    }
    const child = spawn('cargo', args, { cwd: crate, stdio: ['ignore', 'pipe', 'pipe'], env });
    let tail = '';
    const stats = { target, executions: null, execPerSec: null, edges: null, features: null, corpus: null, crashes: 0 };
    const onLine = (line) => {
      // libFuzzer status lines: "#123456 pulse  cov: 812 ft: 2301 corp: 190/12Kb exec/s: 9000 ..."
      const m = /^#(\d+)\s+\S+\s+cov: (\d+) ft: (\d+) corp: (\d+)\/\S+(?:.*exec\/s: (\d+))?/.exec(line);
      if (m) {
        stats.executions = Number(m[1]);
        stats.edges = Number(m[2]);
        stats.features = Number(m[3]);
        stats.corpus = Number(m[4]);
        if (m[5]) stats.execPerSec = Number(m[5]);
      }
      const s = /^stat::number_of_executed_units: (\d+)/.exec(line);
      if (s) stats.executions = Number(s[1]);
      const r = /^stat::average_exec_per_sec:\s+(\d+)/.exec(line);
      if (r) stats.execPerSec = Number(r[1]);
      if (/^#\d+\s+(INITED|DONE|NEW|REDUCE|pulse)|==\d+==|panicked|SUMMARY|Test unit written/.test(line)) process.stderr.write(`[${target}] ${line}\n`);
    };
    // libFuzzer writes a status line in several pieces, so a chunk may end mid-line: each
    // stream keeps its unfinished line until the rest arrives.
    const reader = () => {
      let pending = '';
      return {
        data: (chunk) => {
          const text = chunk.toString();
          tail = (tail + text).slice(-20000);
          const lines = (pending + text).split('\n');
          pending = lines.pop() ?? '';
          for (const line of lines) onLine(line);
        },
        end: () => {
          if (pending) onLine(pending);
          pending = '';
        },
      };
    };
    const out = reader();
    const err = reader();
    child.stdout.on('data', out.data);
    child.stderr.on('data', err.data);
    child.on('close', (code) => {
      out.end();
      err.end();
      const found = readdirSync(artifacts).filter((f) => !before.has(f));
      stats.crashes = found.length;
      stats.artifacts = found.map((f) => path.relative(root, path.join(artifacts, f)));
      stats.exitCode = code;
      stats.seconds = (Date.now() - started) / 1000;
      if (code !== 0 && found.length === 0) stats.error = tail.split('\n').slice(-30).join('\n');
      resolve(stats);
    });
  });
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  // --if-available (CI): a machine without the tools skips, saying so, instead of failing.
  const missing = (what) => {
    console.error(`fuzz: ${what}${o.ifAvailable ? ': SKIPPED, nothing was fuzzed' : ''}`);
    process.exit(o.ifAvailable ? 0 : 2);
  };
  if (!have('cargo', ['+nightly', '--version'])) missing('the nightly toolchain is missing (rustup toolchain install nightly)');
  if (!have('cargo', ['+nightly', 'fuzz', '--version'])) missing('cargo-fuzz is missing (cargo install cargo-fuzz)');
  const results = [];
  for (const t of o.targets) {
    console.error(`fuzz: ${t} for up to ${o.seconds} s${o.runs ? ` or ${o.runs} executions` : ''}`);
    results.push(await runTarget(t, o));
  }
  const w = Math.max(...results.map((r) => r.target.length));
  console.log(`\n${'target'.padEnd(w)} | executions | exec/s  | edges | features | corpus | crashes`);
  for (const r of results) {
    console.log(
      `${r.target.padEnd(w)} | ${String(r.executions ?? 'n/a').padStart(10)} | ${String(r.execPerSec ?? 'n/a').padStart(7)} | ${String(r.edges ?? 'n/a').padStart(5)} | ${String(r.features ?? 'n/a').padStart(8)} | ${String(r.corpus ?? 'n/a').padStart(6)} | ${r.crashes}`,
    );
    for (const a of r.artifacts ?? []) console.log(`  crash input: ${a}`);
    if (r.error) console.log(`  ${r.target} failed to run:\n${r.error}`);
  }
  if (o.json) {
    mkdirSync(path.dirname(path.resolve(o.json)), { recursive: true });
    writeFileSync(o.json, JSON.stringify({ date: new Date().toISOString(), options: o, results }, null, 2));
  }
  const bad = results.some((r) => r.crashes > 0 || r.exitCode !== 0);
  process.exit(bad ? 1 : 0);
}

main().catch((e) => {
  console.error(`fuzz: ${e.message}`);
  process.exit(2);
});
