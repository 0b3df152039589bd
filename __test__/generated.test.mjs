// The TS enums and the Config type are generated from the Rust core's tables
// (scripts/gen-ts.cjs -> ts/generated.ts). These tests fail when the committed file is stale
// and when the built API disagrees with the core's tables.
import test from 'ava';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const native = require(path.join(root, 'native', 'index.js'));
const { render } = require(path.join(root, 'scripts', 'gen-ts.cjs'));
const api = require(path.join(root, 'dist', 'index.js'));

test('ts/generated.ts is what the generator writes from the core tables', (t) => {
  const committed = fs.readFileSync(path.join(root, 'ts', 'generated.ts'), 'utf8');
  t.is(committed, render(native.tables()), 'stale: run `npm run gen:ts` and commit ts/generated.ts');
});

test('the built enums carry exactly the core values', (t) => {
  const tables = native.tables();
  for (const [name, rows] of [
    ['EResult', tables.eResult],
    ['SendFlags', tables.sendFlags],
    ['ConnectionState', tables.connectionState],
    ['ConnectionEnd', tables.connectionEnd],
    ['IdentityType', tables.identityType],
  ]) {
    for (const r of rows) t.is(api[name][r.name], r.value, `${name}.${r.name}`);
  }
  t.deepEqual([...api.CONFIG_KEYS], tables.config.map((k) => k.name));
});

test('getConfig returns every key with the core defaults', async (t) => {
  const peer = await api.NetworkingMessages.create({ bind: '127.0.0.1:0' });
  try {
    const cfg = peer.getConfig();
    for (const k of native.tables().config) t.is(cfg[k.name], k.default, k.name);
    t.is(Object.keys(cfg).length, api.CONFIG_KEYS.length);
  } finally {
    await peer.close();
  }
});
