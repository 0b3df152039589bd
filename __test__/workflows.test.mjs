// Lints every GitHub Actions workflow: YAML syntax and the workflow schema (via
// @action-validator/core, which bundles the SchemaStore schema; works offline), then checks
// that release.yml follows the napi-rs v3 conventions and agrees with package.json.
import test from 'ava';
import { validateWorkflow } from '@action-validator/core';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, '.github', 'workflows');
const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f));
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));

test('there are workflows to lint', (t) => {
  t.true(files.includes('ci.yml'));
  t.true(files.includes('release.yml'));
});

for (const file of files) {
  test(`${file} is valid YAML and a valid workflow`, (t) => {
    const text = readFileSync(path.join(dir, file), 'utf8');
    const doc = YAML.parseDocument(text, { uniqueKeys: true });
    t.deepEqual(doc.errors.map(String), [], 'YAML errors');
    const state = validateWorkflow(text);
    t.deepEqual(state.errors, [], JSON.stringify(state.errors, null, 2));
  });
}

test('the validator rejects a broken workflow (control)', (t) => {
  t.not(validateWorkflow('on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    stepz: []\n').errors.length, 0);
  t.not(validateWorkflow('on: push\njobs:\n  a:\n    runs-on: [\n').errors.length, 0);
});

test('ci.yml still runs the README commands through .ci/run', (t) => {
  const ci = YAML.parse(readFileSync(path.join(dir, 'ci.yml'), 'utf8'));
  const steps = Object.values(ci.jobs).flatMap((j) => j.steps);
  t.true(steps.some((s) => s.run === 'bash .ci/run'));
});

test('release.yml: a build per napi target, tests on three OSes and two Node LTS, a publish with provenance', (t) => {
  const wf = YAML.parse(readFileSync(path.join(dir, 'release.yml'), 'utf8'));
  const { build, publish } = wf.jobs;

  const built = build.strategy.matrix.settings.map((s) => s.target).sort();
  t.deepEqual(built, [...pkg.napi.targets].sort(), 'build matrix == package.json napi.targets');
  for (const s of build.strategy.matrix.settings) t.true(s.build.includes(`--target ${s.target}`), s.target);
  t.deepEqual([...pkg.napi.targets].sort(), [
    'aarch64-apple-darwin', 'aarch64-unknown-linux-gnu', 'aarch64-unknown-linux-musl',
    'x86_64-apple-darwin', 'x86_64-pc-windows-msvc', 'x86_64-unknown-linux-gnu', 'x86_64-unknown-linux-musl',
  ]);

  const testJobs = Object.entries(wf.jobs).filter(([name]) => name.startsWith('test'));
  const hosts = new Set();
  const tested = new Set();
  for (const [, job] of testJobs) {
    t.deepEqual(job.needs, 'build');
    t.is(job.strategy.matrix.node.length, 2, 'two Node versions');
    for (const v of job.strategy.matrix.node) t.true(Number(v) % 2 === 0 && Number(v) >= 20, `Node ${v} is an LTS line`);
    for (const s of job.strategy.matrix.settings ?? []) {
      hosts.add(s.host.split('-')[0]);
      tested.add(s.target);
    }
    for (const target of job.strategy.matrix.target ?? []) {
      hosts.add('ubuntu');
      tested.add(target);
    }
  }
  t.deepEqual([...hosts].sort(), ['macos', 'ubuntu', 'windows']);
  t.deepEqual([...tested].sort(), [...pkg.napi.targets].sort(), 'every target is tested');

  t.deepEqual([publish.needs].flat().sort(), testJobs.map(([n]) => n).sort());
  t.is(publish.permissions['id-token'], 'write');
  const runs = publish.steps.map((s) => s.run ?? '').join('\n');
  t.regex(runs, /npm run create-npm-dirs/);
  t.regex(runs, /npm run artifacts/);
  t.regex(runs, /npm publish .*--provenance/);
  t.is(pkg.scripts['create-npm-dirs'], 'napi create-npm-dirs --npm-dir npm');
  t.regex(pkg.scripts.artifacts, /^napi artifacts /);
  t.regex(pkg.scripts.prepublishOnly, /^napi prepublish -t npm /);
});
