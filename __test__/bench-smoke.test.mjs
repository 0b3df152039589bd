// Smoke test of the benchmark suite: one tiny scenario end to end (~5 s), real child
// processes on loopback, checking the JSON and SVG it writes. Numbers are not judged, only
// that they were measured (nonzero).
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

test('bench --smoke runs unreliable-32B for netmessages and dgram and writes JSON + SVG', async (t) => {
  t.timeout(30000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'netmessages-bench-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const { code, stdout, stderr } = await new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(root, 'bench/run.mjs'), '--smoke', `--out-dir=${dir}`],
      { cwd: root, timeout: 25000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr }),
    );
  });
  t.is(code, 0, `bench exited with ${code}\n${stdout}\n${stderr}`);

  const files = readdirSync(dir);
  const json = files.filter((f) => f.endsWith('.json'));
  t.is(json.length, 1, `one JSON result in ${files}`);
  t.true(files.includes('latest.svg'));

  const r = JSON.parse(readFileSync(path.join(dir, json[0]), 'utf8'));
  t.is(r.schema, 1);
  t.is(r.mode, 'smoke');
  t.deepEqual(r.errors, []);
  t.true(r.machine.cpus > 0);
  t.is(typeof r.startedAt, 'string');

  t.is(r.scenarios.length, 1);
  const [sc] = r.scenarios;
  t.is(sc.id, 'unreliable-32B');
  t.is(sc.subject, 'netmessages');
  t.deepEqual(sc.baselines, ['dgram']);
  for (const impl of ['netmessages', 'dgram']) {
    const run = sc.runs[impl];
    t.falsy(run.error, `${impl}: ${run.error}`);
    for (const k of ['msgsPerSec', 'mbPerSec', 'sent', 'received', 'windowMs']) {
      t.is(typeof run[k], 'number', `${impl}.${k}`);
      t.true(run[k] > 0, `${impl}.${k} = ${run[k]}`);
    }
    t.is(run.msgSize, 32);
    t.true(run.received <= run.sent, `${impl}: received ${run.received} <= sent ${run.sent}`);
    t.is(typeof run.lossPercent, 'number');
    t.is(typeof run.backpressureWaits, 'number');
  }
  t.is(r.table.length, 1);
  t.is(r.table[0].baseline, 'dgram');
  t.regex(r.table[0].ratio, /^\d+\.\d\dx$/);

  const svg = readFileSync(path.join(dir, 'latest.svg'), 'utf8');
  t.regex(svg, /<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.regex(svg, /netmessages/);
  t.regex(svg, /<rect /);
});
