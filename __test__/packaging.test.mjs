// The package as a user gets it: `npm pack`, install the tarball (offline, its runtime
// dependencies put in npm's cache first at their locked versions) into an empty folder, then `require` and `import` it and run a real loopback
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

  // `--offline` proves the install itself downloads nothing (no binary fetched, no build);
  // the runtime dependencies' metadata must then be in npm's cache, which `npm ci` does not
  // fill (it fetches the locked tarballs only), so a fresh machine puts them there first.
  const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8'));
  const pinned = {};
  for (const dep of Object.keys(pkg.dependencies ?? {})) {
    const version = lock.packages?.[`node_modules/${dep}`]?.version;
    if (!version) throw new Error(`package-lock.json has no locked version of ${dep}`);
    const added = await npm(['cache', 'add', `${dep}@${version}`], work);
    if (added.code !== 0) throw new Error(`npm cache add ${dep}@${version} failed:\n${added.stderr}`);
    pinned[dep] = version;
  }
  mkdirSync(app);
  // The consumer pins the locked versions, as its own lockfile would: otherwise npm resolves
  // our `^` range against the cached metadata, and a release newer than the lock (not in the
  // cache) fails the offline install.
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, dependencies: pinned }));
  // --foreground-scripts: show the postinstall's own output, to check what it did.
  install = await npm(['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts', tarball], app);
});
test.after.always(() => rmSync(work, { recursive: true, force: true }));

/** Every file under `dir` (relative to the root, with forward slashes). */
function filesUnder(dir) {
  return readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath ?? e.path, e.name)).split(path.sep).join('/'));
}

test.serial('the tarball ships dist, the loader and this platform\'s binary, the CLI, the docs and examples, and nothing else', (t) => {
  const dist = readdirSync(path.join(root, 'dist')).map((f) => `dist/${f}`);
  const docs = readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
  const expected = [
    'CHANGELOG.md', 'LICENSE', 'README.md', 'package.json',
    'bin/netmessages.mjs', 'bin/commands/keys.mjs', 'bin/commands/signal.mjs', 'scripts/ensure-native.cjs',
    'signal/cert.mjs', 'signal/client.mjs', 'signal/redis.mjs', 'signal/server.mjs',
    'native/index.js', 'native/index.d.ts', `native/${binary}`,
    ...filesUnder('examples'),
    ...docs,
    ...dist,
  ].sort();
  t.true(docs.includes('docs/API.md') && docs.includes('docs/PORTING-FROM-DGRAM.md'));
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

test.serial('the examples run from the installed package, importing netmessages by name', async (t) => {
  t.is(install.code, 0);
  for (const f of ['examples/chat/chat.mjs', 'examples/sockets-chat/chat.mjs', 'examples/dedicated-server/server.mjs', 'examples/loadtest/loadtest.mjs', 'examples/demo.mjs', 'bin/commands/keys.mjs']) {
    const text = readFileSync(path.join(installed, f), 'utf8');
    t.regex(text, /from 'netmessages';/, f);
    t.notRegex(text, /dist\/index/, f);
  }
  const r = await node([path.join(installed, 'examples/dedicated-server/server.mjs'), '--bots', '2', '--seconds', '2'], app);
  t.is(r.code, 0, `${r.stdout}\n${r.stderr}`);
  t.regex(r.stdout, /2 joined, 2 left, 0 timed out; .* ok$/m);
});

test.serial('a strict TypeScript (nodenext) project type-checks and runs: await using, the log callback, stats, typed errors', async (t) => {
  t.timeout(120000);
  t.is(install.code, 0);
  const ts = path.join(app, 'ts');
  mkdirSync(ts, { recursive: true });
  writeFileSync(path.join(ts, 'package.json'), JSON.stringify({ name: 'ts-consumer', private: true, type: 'module' }));
  writeFileSync(
    path.join(ts, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'nodenext',
        moduleResolution: 'nodenext',
        target: 'es2022',
        lib: ['es2022', 'esnext.disposable'],
        strict: true,
        noUncheckedIndexedAccess: true,
        exactOptionalPropertyTypes: true,
        outDir: 'out',
        types: ['node'],
        typeRoots: [path.join(root, 'node_modules', '@types')],
      },
      files: ['main.ts', 'wrong.ts'],
    }),
  );
  writeFileSync(
    path.join(ts, 'main.ts'),
    `import {
  ConnectionEnd, DebugOutputType, EResult, NetmessagesError, NetworkingMessages, SendFlags,
  setDebugOutputFunction, toPrometheus, type EndpointStats, type NetworkingMessage, type SendProblem,
} from 'netmessages';

const lines: string[] = [];
setDebugOutputFunction(DebugOutputType.Msg, (level: DebugOutputType, message: string) => {
  lines.push(\`\${DebugOutputType[level]} \${message}\`);
});
{
  await using server = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
  await using client = await NetworkingMessages.create({ bind: '127.0.0.1:0', strict: true });
  server.on('sessionRequest', ({ identityRemote }) => {
    server.acceptSessionWithUser(identityRemote);
  });
  server.on('receiveBlocked', (e) => {
    const channel: number | null = e.channel;
    console.log(\`stalled on \${channel}\`);
  });
  client.on('sessionFailed', ({ info }) => {
    const reason: ConnectionEnd = info.endReason;
    console.log(\`failed \${ConnectionEnd[reason]}\`);
  });
  const r: EResult = client.sendMessageToUser(server.identity, 'ping', SendFlags.Reliable, 0);
  if (r !== EResult.OK) throw new Error(\`send: \${EResult[r]}\`);
  for await (const m of server.messages(0)) {
    const msg: NetworkingMessage = m;
    console.log(\`got \${msg.data.toString()} from \${msg.identityPeer.toString()}\`);
    break;
  }
  const stats: EndpointStats = server.getEndpointStats();
  console.log(\`sessions \${stats.sessions}, connected \${stats.sessionsByState.Connected ?? 0}\`);
  console.log(toPrometheus(stats).includes('netmessages_datagrams_received_total ') ? 'prometheus ok' : 'prometheus missing');
  const [entry] = server.listSessions();
  console.log(\`listed \${entry?.stats.packetsReceived !== undefined}\`);
  try {
    client.sendMessageToUser('ip:localhost:1', 'x');
  } catch (e) {
    if (e instanceof NetmessagesError) console.log(\`strict \${e.code}\`);
  }
  const why: SendProblem | undefined = client.lastError();
  console.log(\`last \${why?.code}\`);
}
await new Promise((r) => setTimeout(r, 200));
console.log(lines.some((l) => l.startsWith('Msg connection established')) ? 'log ok' : \`log missing: \${lines.join('; ')}\`);
setDebugOutputFunction(DebugOutputType.None, null);
`,
  );
  // Mistakes the types catch: each line must be an error, or tsc fails on the unused directive.
  writeFileSync(
    path.join(ts, 'wrong.ts'),
    `import { NetworkingMessages, DebugOutputType, setDebugOutputFunction } from 'netmessages';
export async function wrong(): Promise<void> {
  // @ts-expect-error: not an option
  await NetworkingMessages.create({ bnd: '127.0.0.1:0' });
  // @ts-expect-error: config values are numbers
  await NetworkingMessages.create({ config: { nagleTime: '5' } });
  // @ts-expect-error: the callback gets a level and a string
  setDebugOutputFunction(DebugOutputType.Debug, (level: string) => level);
  const p = await NetworkingMessages.create();
  // @ts-expect-error: no such event
  p.on('message', () => {});
}
`,
  );
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const built = await node([tsc, '-p', ts], ts);
  t.is(built.code, 0, `${built.stdout}\n${built.stderr}`);
  const r = await node([path.join(ts, 'out', 'main.js')], ts);
  t.is(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const out = r.stdout.trim().split('\n');
  t.regex(out[0], /^got ping from ip:127\.0\.0\.1:\d+$/);
  t.deepEqual(out.slice(1), ['sessions 1, connected 1', 'prometheus ok', 'listed true', 'strict ERR_NETMESSAGES_BAD_IDENTITY', 'last ERR_NETMESSAGES_BAD_IDENTITY', 'log ok']);
});

test.serial('on the registry page the README links point at the repository files of the published tag', async (t) => {
  const dir = path.join(work, 'publish-copy');
  mkdirSync(dir);
  cpSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  cpSync(path.join(root, 'README.md'), path.join(dir, 'README.md'));
  const r = await node([path.join(root, 'scripts', 'point-at-repository.cjs'), 'example-owner/netmessages', 'v9.9.9', '--dir', dir], dir);
  t.is(r.code, 0, r.stderr);
  const published = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  t.deepEqual(published.repository, { type: 'git', url: 'git+https://github.com/example-owner/netmessages.git' });
  t.is(published.homepage, 'https://github.com/example-owner/netmessages#readme');
  t.deepEqual(published.bugs, { url: 'https://github.com/example-owner/netmessages/issues' });
  const readme = readFileSync(path.join(dir, 'README.md'), 'utf8');
  const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]);
  t.true(links.length >= 5);
  const prefix = 'https://github.com/example-owner/netmessages/blob/v9.9.9/';
  for (const l of links.filter((l) => !l.startsWith('#'))) {
    t.true(/^https?:\/\//.test(l), `absolute: ${l}`);
    if (l.startsWith(prefix)) t.true(existsSync(path.join(root, l.slice(prefix.length))), `${l} names a file of the repository`);
  }
  t.true(links.some((l) => l === `${prefix}docs/API.md`));
  // The release workflow runs it with the repository and tag it publishes.
  t.regex(readFileSync(path.join(root, '.github', 'workflows', 'release.yml'), 'utf8'), /node scripts\/point-at-repository\.cjs "\$\{GITHUB_REPOSITORY\}" "\$\{GITHUB_REF_NAME\}"/);
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
