// The package as a user gets it: `npm pack`, install the tarball (offline: it has no runtime
// dependencies) into an empty folder, then `require` and `import` it and run a real loopback
// round trip from there. Also checks what the tarball ships, that the installed postinstall
// never builds, and the loader's order: the binary in native/ first, then the per-platform
// package napi-rs makes (made here with the same `napi create-npm-dirs` + `napi artifacts`
// the release workflow runs), then a clear error naming the platform and what to do.
import test from 'ava';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { platformName } = require('../dist/native.js');
const platform = platformName();
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const TRIPLES = {
  'linux-x64-gnu': 'x86_64-unknown-linux-gnu',
  'linux-x64-musl': 'x86_64-unknown-linux-musl',
  'linux-arm64-gnu': 'aarch64-unknown-linux-gnu',
  'linux-arm64-musl': 'aarch64-unknown-linux-musl',
  'darwin-x64': 'x86_64-apple-darwin',
  'darwin-arm64': 'aarch64-apple-darwin',
  'win32-x64-msvc': 'x86_64-pc-windows-msvc',
};

// Child npm/node processes get an environment without the npm_* variables `npm test` sets, so
// that an install in the temp folder cannot pick up this project's configuration.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));

function exec(file, args, cwd, ms = 120000) {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env, timeout: ms, killSignal: 'SIGKILL', maxBuffer: 16 << 20, shell: process.platform === 'win32' && !file.endsWith('.exe') },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr }));
  });
}
const npmCli = (() => {
  const p = process.env.npm_execpath;
  if (p && p.endsWith('.js')) return p.replace(/npx-cli\.js$/, 'npm-cli.js');
  return undefined;
})();
const npm = (args, cwd) => (npmCli ? exec(process.execPath, [npmCli, ...args], cwd) : exec('npm', args, cwd));
const node = (args, cwd) => exec(process.execPath, args, cwd, 60000);
const napiCli = path.join(path.dirname(require.resolve('@napi-rs/cli/package.json')), require('@napi-rs/cli/package.json').bin.napi);
const napi = (args, cwd) => exec(process.execPath, [napiCli, ...args], cwd);

const work = mkdtempSync(path.join(os.tmpdir(), 'netmessages-pack-'));
const app = path.join(work, 'app');
const installed = path.join(app, 'node_modules', 'netmessages');
const binary = `netmessages.${platform}.node`;
let tarball;
let packFiles;
let install;

test.before(async () => {
  const packed = await npm(['pack', '--json', '--pack-destination', work], root);
  if (packed.code !== 0) throw new Error(`npm pack failed:\n${packed.stderr}`);
  const info = JSON.parse(packed.stdout)[0];
  tarball = path.join(work, info.filename);
  packFiles = info.files.map((f) => f.path.replace(/\\/g, '/')).sort();

  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  // --foreground-scripts: show the postinstall's own output, to check what it did.
  install = await npm(['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts', tarball], app);
});
test.after.always(() => rmSync(work, { recursive: true, force: true }));

test.serial('the tarball ships dist, the loader and this platform\'s binary, the CLI, and nothing else', (t) => {
  const dist = readdirSync(path.join(root, 'dist')).map((f) => `dist/${f}`);
  const expected = [
    'CHANGELOG.md', 'LICENSE', 'README.md', 'package.json',
    'bin/netmessages.mjs', 'bin/commands/keys.mjs', 'bin/commands/signal.mjs', 'examples/loadtest/loadtest.mjs', 'scripts/ensure-native.cjs',
    'signal/cert.mjs', 'signal/client.mjs', 'signal/redis.mjs', 'signal/server.mjs',
    'native/index.js', 'native/index.d.ts', `native/${binary}`,
    ...dist,
  ].sort();
  t.deepEqual(packFiles, expected);
  for (const f of ['dist/index.js', 'dist/index.mjs', 'dist/index.d.ts', 'dist/index.d.mts']) t.true(packFiles.includes(f), f);
});

test.serial('npm install --offline of the tarball works; its postinstall does not build from source', (t) => {
  t.is(install.code, 0, `${install.stdout}\n${install.stderr}`);
  t.true(existsSync(path.join(installed, 'package.json')));
  for (const absent of ['binding', 'crates', 'ts', 'Cargo.toml', '__test__']) t.false(existsSync(path.join(installed, absent)), absent);
  const out = install.stdout + install.stderr;
  t.regex(out, /netmessages@[\d.]+ postinstall/, 'the postinstall ran');
  t.regex(out, /node scripts\/ensure-native\.cjs/);
  t.notRegex(out, /cargo|Compiling|napi build|build:native/i);
  const lock = JSON.parse(readFileSync(path.join(app, 'package-lock.json'), 'utf8'));
  // ws is the signaling server's (`netmessages signal`) only dependency; redis is an optional peer.
  t.deepEqual(Object.keys(lock.packages).sort(), ['', 'node_modules/netmessages', 'node_modules/ws'], 'no runtime dependencies but ws');
});

const roundTrip = (load) => `
${load}
const server = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
server.on('sessionRequest', ({ identityRemote }) => server.acceptSessionWithUser(identityRemote));
server.on('messages', (ch) => {
  for (const m of server.receiveMessagesOnChannel(ch)) server.sendMessageToUser(m.identityPeer, 'pong:' + m.data, SendFlags.Reliable, ch);
});
const client = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
const r = client.sendMessageToUser(server.identity, 'ping', SendFlags.Reliable, 3);
if (r !== EResult.OK) throw new Error('send returned ' + r);
for await (const m of client.messages(3)) {
  console.log('reply ' + m.data + ' from ' + m.identityPeer.equals(server.identity));
  break;
}
await Promise.all([client.close(), server.close()]);
`;

test.serial('require() from the installed package: a real loopback round trip', async (t) => {
  t.is(install.code, 0);
  const file = path.join(app, 'rt.cjs');
  writeFileSync(file, `(async () => {${roundTrip("const { NetworkingMessages, SendFlags, EResult } = require('netmessages');")}})().catch((e) => { console.error(e); process.exit(1); });`);
  const r = await node([file], app);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), 'reply pong:ping from true');
});

test.serial('import from the installed package: a real loopback round trip', async (t) => {
  t.is(install.code, 0);
  const file = path.join(app, 'rt.mjs');
  writeFileSync(file, roundTrip("import { NetworkingMessages, SendFlags, EResult } from 'netmessages';\nimport nm from 'netmessages';\nif (nm.NetworkingMessages !== NetworkingMessages) throw new Error('two instances');"));
  const r = await node([file], app);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), 'reply pong:ping from true');
});

test.serial('the installed bin runs: netmessages loadtest', async (t) => {
  t.is(install.code, 0);
  const bin = path.join(app, 'node_modules', '.bin', process.platform === 'win32' ? 'netmessages.cmd' : 'netmessages');
  t.true(existsSync(bin));
  const r = await node([path.join(installed, 'bin', 'netmessages.mjs'), 'loadtest', '--peers', '2', '--rate', '50', '--seconds', '1', '--json'], app);
  t.is(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  t.is(res.sent, 100);
  t.true(res.received > 0);
});

test.serial('the installed bin runs: netmessages signal (its ws dependency installed with it)', async (t) => {
  t.is(install.code, 0);
  const file = path.join(app, 'signal-check.mjs');
  writeFileSync(file, `
import { spawn } from 'node:child_process';
const c = spawn(process.execPath, [${JSON.stringify(path.join(installed, 'bin', 'netmessages.mjs'))}, 'signal', '--host', '127.0.0.1', '--port', '0', '--trusted-ca', '${'11'.repeat(32)}']);
let out = '';
c.stdout.on('data', (d) => { out += d; if (/listening on 127\\.0\\.0\\.1:\\d+/.test(out)) c.kill('SIGTERM'); });
c.stderr.on('data', (d) => { out += d; });
c.on('exit', (code) => { console.log(/listening on/.test(out) ? 'listening, exit ' + code : 'failed: ' + out); });
`);
  const r = await node([file], app);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), 'listening, exit 0');
});

// Prints which binary file the loader actually loaded.
const WHICH = `const n = require('netmessages'); n.Identity.parse('str:x');
console.log(Object.keys(require.cache).filter((k) => k.endsWith('.node')).map((k) => require('path').relative(process.cwd(), k).split(require('path').sep).join('/')).join(','));`;

test.serial('loader order: native/ first, then the platform package, then a clear error', async (t) => {
  t.timeout(180000);
  t.is(install.code, 0);
  t.truthy(TRIPLES[platform], `platform ${platform} is one of napi.targets`);
  t.true(pkg.napi.targets.includes(TRIPLES[platform]));
  const which = path.join(app, 'which.cjs');
  writeFileSync(which, WHICH);

  // 1. The binary in the package's own native/ folder.
  let r = await node([which], app);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), `node_modules/netmessages/native/${binary}`);

  // 2. The per-platform package, made as the release workflow makes it.
  const pub = path.join(work, 'pub');
  mkdirSync(path.join(pub, 'artifacts', `bindings-${TRIPLES[platform]}`), { recursive: true });
  writeFileSync(path.join(pub, 'package.json'), JSON.stringify({ ...pkg, napi: { ...pkg.napi, targets: [TRIPLES[platform]] } }, null, 2));
  cpSync(path.join(root, 'native', binary), path.join(pub, 'artifacts', `bindings-${TRIPLES[platform]}`, binary));
  for (const args of [['create-npm-dirs', '--npm-dir', 'npm'], ['artifacts', '--output-dir', 'artifacts', '--npm-dir', 'npm']]) {
    const step = await napi(args, pub);
    t.is(step.code, 0, `napi ${args[0]}: ${step.stdout}\n${step.stderr}`);
  }
  const platformDir = path.join(pub, 'npm', platform);
  const platformPkg = JSON.parse(readFileSync(path.join(platformDir, 'package.json'), 'utf8'));
  t.is(platformPkg.name, `netmessages-${platform}`);
  t.is(platformPkg.version, pkg.version);
  t.is(platformPkg.main, binary);
  const packedPlatform = await npm(['pack', '--json', '--pack-destination', work], platformDir);
  t.is(packedPlatform.code, 0, packedPlatform.stderr);
  const platformTgz = path.join(work, JSON.parse(packedPlatform.stdout)[0].filename);
  const inst = await npm(['install', '--offline', '--no-audit', '--no-fund', '--no-save', platformTgz], app);
  t.is(inst.code, 0, `${inst.stdout}\n${inst.stderr}`);
  renameSync(path.join(installed, 'native', binary), path.join(work, binary));
  r = await node([which], app);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), `node_modules/netmessages-${platform}/${binary}`);

  // 3. Neither: a clear error, from `require` and from the postinstall check.
  rmSync(path.join(app, 'node_modules', `netmessages-${platform}`), { recursive: true, force: true });
  r = await node([which], app);
  t.not(r.code, 0);
  t.regex(r.stderr, new RegExp(`netmessages: no native binary could be loaded for ${platform}`));
  t.regex(r.stderr, new RegExp(`native/netmessages\\.${platform}\\.node .*netmessages-${platform}`));
  t.regex(r.stderr, new RegExp(`npm install netmessages-${platform}`));
  t.regex(r.stderr, /--omit=optional/);
  const post = await node([path.join(installed, 'scripts', 'ensure-native.cjs')], app);
  t.is(post.code, 1);
  t.regex(post.stderr, new RegExp(`no native binary could be loaded for ${platform}`));
  t.notRegex(post.stderr, /cargo/);
  renameSync(path.join(work, binary), path.join(installed, 'native', binary));
});

test('the load-failure message for a platform without a prebuilt binary says how to build from source', (t) => {
  const { loadFailureMessage, PREBUILT_PLATFORMS } = require('../dist/native.js');
  t.deepEqual([...PREBUILT_PLATFORMS].sort(), Object.keys(TRIPLES).sort());
  t.deepEqual(pkg.napi.targets.slice().sort(), Object.values(TRIPLES).sort());
  const msg = loadFailureMessage(new Error('boom'));
  t.regex(msg, new RegExp(platform));
  t.regex(msg, /Loader said: boom/);
  const arch = Object.getOwnPropertyDescriptor(process, 'arch');
  Object.defineProperty(process, 'arch', { value: 'riscv64', configurable: true });
  try {
    const other = loadFailureMessage(new Error('boom'));
    t.regex(other, /riscv64/);
    t.regex(other, /There is no prebuilt binary/);
    t.regex(other, /Rust toolchain/);
  } finally {
    Object.defineProperty(process, 'arch', arch);
  }
});
