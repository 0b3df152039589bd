#!/usr/bin/env node
// A release without the upload: builds every target this machine can, makes the per-platform
// packages exactly as release.yml's publish job does (`napi create-npm-dirs`, `napi artifacts`,
// `napi prepublish` with the upload skipped, which writes the root's optionalDependencies),
// packs them all with `npm pack` (the tarballs `npm publish` would upload), then installs the
// root tarball with its platform tarball offline into an empty folder and runs a loopback
// smoke there: send, receive, reply, and which binary file was loaded.
//
//   npm run release:dry                 the host (linux-x64-gnu) plus the three Linux cross
//                                        targets (scripts/cross/build.sh: zigbuild); each cross
//                                        target's tarball is also installed for its platform
//                                        (npm --cpu/--libc) and smoke-tested with that
//                                        platform's Node.js (qemu for arm64)
//   npm run release:dry -- --host-only  only the host's binary, from native/ and stripped
//                                        (what CI runs)
//
// Output: target/release-dry/ (stage/, tarballs/, app-<platform>/), removed first.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const hostOnly = process.argv.includes('--host-only');
const out = path.join(root, 'target', 'release-dry');
const stage = path.join(out, 'stage');
const tarballs = path.join(out, 'tarballs');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));

const PLATFORMS = {
  'x86_64-unknown-linux-gnu': { plat: 'linux-x64-gnu', cpu: 'x64', libc: 'glibc' },
  'x86_64-unknown-linux-musl': { plat: 'linux-x64-musl', cpu: 'x64', libc: 'musl' },
  'aarch64-unknown-linux-gnu': { plat: 'linux-arm64-gnu', cpu: 'arm64', libc: 'glibc' },
  'aarch64-unknown-linux-musl': { plat: 'linux-arm64-musl', cpu: 'arm64', libc: 'musl' },
};
const CROSS = ['x86_64-unknown-linux-musl', 'aarch64-unknown-linux-gnu', 'aarch64-unknown-linux-musl'];

const log = (msg) => console.log(`[release:dry] ${msg}`);
// Child npm/node processes without the npm_* variables `npm run` sets, so nothing of this
// project's configuration leaks into the packing or the install.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
function run(file, args, cwd, extraEnv = {}) {
  const r = spawnSync(file, args, { cwd, env: { ...env, ...extraEnv }, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    throw new Error(`${file} ${args.join(' ')} (in ${cwd}) failed with ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}
// npm's own entry point, to run it with another platform's Node.js.
const npmCli = process.env.npm_execpath?.endsWith('npm-cli.js')
  ? process.env.npm_execpath
  : path.join(execFileSync('npm', ['root', '-g'], { encoding: 'utf8' }).trim(), 'npm', 'bin', 'npm-cli.js');
const napiCli = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js');
const napi = (args, cwd) => run(process.execPath, [napiCli, ...args], cwd);
const npm = (args, cwd, extraEnv) => run('npm', args, cwd, extraEnv);

if (process.platform !== 'linux' || process.arch !== 'x64') {
  throw new Error('release:dry builds Linux targets on a Linux x64 host; this is ' + `${process.platform}-${process.arch}`);
}
const hostTriple = 'x86_64-unknown-linux-gnu';

// 1. The JS side and the host binary (both no-ops when up to date).
log('npm run build (TypeScript and the host binary)');
npm(['run', 'build'], root);

// 2. Binaries: the host's from native/ (--host-only), else every Linux target via zigbuild
//    (the host's too, for the glibc 2.17 baseline CI's binary has).
rmSync(out, { recursive: true, force: true });
mkdirSync(tarballs, { recursive: true });
const built = hostOnly ? [hostTriple] : [hostTriple, ...CROSS];
const artifacts = path.join(stage, 'artifacts');
if (hostOnly) {
  const file = `${pkg.napi.binaryName}.${PLATFORMS[hostTriple].plat}.node`;
  mkdirSync(path.join(artifacts, `bindings-${hostTriple}`), { recursive: true });
  // Stripped, as release.yml's `--strip` (the linker's -s) makes the binary CI uploads.
  run('strip', ['-s', '-o', path.join(artifacts, `bindings-${hostTriple}`, file), path.join(root, 'native', file)], root);
} else {
  log(`scripts/cross/build.sh ${built.join(' ')}`);
  const lines = run('bash', [path.join(root, 'scripts', 'cross', 'build.sh'), ...built], root);
  process.stdout.write(lines);
  for (const triple of built) {
    const file = `${pkg.napi.binaryName}.${PLATFORMS[triple].plat}.node`;
    mkdirSync(path.join(artifacts, `bindings-${triple}`), { recursive: true });
    cpSync(path.join(root, 'target', 'cross', 'artifacts', `bindings-${triple}`, file), path.join(artifacts, `bindings-${triple}`, file));
  }
}

// 3. The stage: what a checkout in the publish job holds (tracked files, dist/, the loader).
const tracked = execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean);
for (const f of tracked) cpSync(path.join(root, f), path.join(stage, f), { recursive: true });
cpSync(path.join(root, 'dist'), path.join(stage, 'dist'), { recursive: true });
mkdirSync(path.join(stage, 'native'), { recursive: true });
for (const f of ['index.js', 'index.d.ts']) cpSync(path.join(root, 'native', f), path.join(stage, 'native', f));
writeFileSync(path.join(stage, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');

log('napi create-npm-dirs, napi artifacts, napi prepublish --skip-optional-publish');
napi(['create-npm-dirs', '--npm-dir', 'npm'], stage);
const platformNames = readdirSync(path.join(stage, 'npm')).map((d) => JSON.parse(readFileSync(path.join(stage, 'npm', d, 'package.json'), 'utf8')).name);
if (platformNames.length !== pkg.napi.targets.length) throw new Error(`create-npm-dirs made ${platformNames}`);
// `napi artifacts` and `prepublish` insist on a binary for every configured target, so they
// are given the targets built here (darwin and win32 are built in CI only); prepublish checks
// each package it would publish and writes their entries of the root's optionalDependencies.
writeFileSync(path.join(stage, 'package.json'), JSON.stringify({ ...pkg, napi: { ...pkg.napi, targets: pkg.napi.targets.filter((t) => built.includes(t)) } }, null, 2) + '\n');
napi(['artifacts', '--output-dir', 'artifacts', '--npm-dir', 'npm'], stage);
napi(['prepublish', '-t', 'npm', '--npm-dir', 'npm', '--no-gh-release', '--skip-optional-publish'], stage);
const optional = JSON.parse(readFileSync(path.join(stage, 'package.json'), 'utf8')).optionalDependencies ?? {};
for (const triple of built) {
  const name = `${pkg.name}-${PLATFORMS[triple].plat}`;
  if (optional[name] !== pkg.version) throw new Error(`prepublish did not add ${name}@${pkg.version} to optionalDependencies: ${JSON.stringify(optional)}`);
}
// The root as the real publish packs it: all targets, one optional dependency per platform
// package (the ones not built here are not in the offline install's reach; npm skips an
// optional dependency it cannot fetch, as it skips one for another platform).
const rootManifest = { ...pkg, optionalDependencies: Object.fromEntries(platformNames.sort().map((n) => [n, pkg.version])) };
writeFileSync(path.join(stage, 'package.json'), JSON.stringify(rootManifest, null, 2) + '\n');

// 4. Pack: one tarball per platform package, and the root (with no binary: release.yml
//    removes them before publishing; none was staged here).
const packed = {};
const pack = (dir) => {
  const [info] = JSON.parse(npm(['pack', '--json', '--pack-destination', tarballs], dir));
  return { file: path.join(tarballs, info.filename), files: info.files.map((f) => f.path), size: info.size, unpacked: info.unpackedSize };
};
for (const triple of built) {
  const { plat } = PLATFORMS[triple];
  const p = pack(path.join(stage, 'npm', plat));
  const manifest = JSON.parse(readFileSync(path.join(stage, 'npm', plat, 'package.json'), 'utf8'));
  const binary = `${pkg.napi.binaryName}.${plat}.node`;
  if (!p.files.includes(binary)) throw new Error(`${path.basename(p.file)} lacks ${binary}: ${p.files}`);
  if (manifest.cpu?.[0] !== PLATFORMS[triple].cpu || (manifest.libc && manifest.libc[0] !== PLATFORMS[triple].libc)) {
    throw new Error(`${manifest.name}: cpu ${manifest.cpu} libc ${manifest.libc}, expected ${PLATFORMS[triple].cpu}/${PLATFORMS[triple].libc}`);
  }
  packed[triple] = p;
}
const rootPack = pack(stage);
const shippedBinaries = rootPack.files.filter((f) => f.endsWith('.node'));
if (shippedBinaries.length) throw new Error(`the root tarball ships binaries: ${shippedBinaries}`);
for (const p of [rootPack, ...Object.values(packed)]) log(`packed ${path.basename(p.file)}: ${p.size} B (${p.unpacked} B unpacked, ${p.files.length} files)`);

// 5. Install offline into an empty folder, for the host and (full run) each cross platform,
//    then the smoke with that platform's Node.js.
const SMOKE = `
const { NetworkingMessages, SendFlags, EResult } = require('netmessages');
(async () => {
  const server = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
  server.on('sessionRequest', ({ identityRemote }) => server.acceptSessionWithUser(identityRemote));
  server.on('messages', (ch) => {
    for (const m of server.receiveMessagesOnChannel(ch)) server.sendMessageToUser(m.identityPeer, 'pong:' + m.data, SendFlags.Reliable, ch);
  });
  const client = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
  const r = client.sendMessageToUser(server.identity, 'ping', SendFlags.Reliable, 2);
  if (r !== EResult.OK) throw new Error('send returned ' + r);
  for await (const m of client.messages(2)) {
    const loaded = Object.keys(require.cache).filter((k) => k.endsWith('.node')).map((k) => require('path').relative(process.cwd(), k));
    console.log(JSON.stringify({ arch: process.arch, reply: String(m.data), fromServer: m.identityPeer.equals(server.identity), loaded }));
    break;
  }
  await Promise.all([client.close(), server.close()]);
})().catch((e) => { console.error(e); process.exit(1); });
`;

let crossEnv = {};
if (!hostOnly) {
  // The installs below run npm on each platform's own Node.js, so those and musl's loader must
  // be here (each piece is fetched only if missing; a clean clone has none of them).
  run('bash', [path.join(root, 'scripts', 'cross', 'setup.sh'), 'musl', 'nodes'], root);
  const lines = readFileSync(path.join(root, 'target', 'cross', 'env.sh'), 'utf8').split('\n');
  for (const l of lines) {
    const m = /^export (\w+)="(.*)"$/.exec(l);
    if (m && m[1].startsWith('NODE_')) crossEnv[m[1]] = m[2];
  }
}
const runners = {
  'x86_64-unknown-linux-gnu': () => [process.execPath],
  'x86_64-unknown-linux-musl': () => ['bash', path.join(root, 'scripts', 'cross', 'as-musl.sh'), 'x86_64', crossEnv.NODE_LINUX_X64_MUSL],
  'aarch64-unknown-linux-gnu': () => ['qemu-aarch64-static', '-L', '/usr/aarch64-linux-gnu', crossEnv.NODE_LINUX_ARM64_GNU],
  'aarch64-unknown-linux-musl': () => ['bash', path.join(root, 'scripts', 'cross', 'as-musl.sh'), 'aarch64', 'qemu-aarch64-static', crossEnv.NODE_LINUX_ARM64_MUSL],
};

// `--offline` below proves the install downloads nothing itself; the root package's runtime
// dependencies must then be in npm's cache with their metadata, which `npm ci` does not leave
// there (it fetches locked tarballs only): a fresh machine puts their locked versions there.
const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8'));
// The consumer pins these locked versions (as its lockfile would), so a release newer than the
// lock, listed in the cached metadata but not cached itself, cannot fail the offline install.
const pinned = {};
for (const dep of Object.keys(pkg.dependencies ?? {})) {
  const version = lock.packages?.[`node_modules/${dep}`]?.version;
  if (!version) throw new Error(`package-lock.json has no locked version of ${dep}`);
  run(process.execPath, [npmCli, 'cache', 'add', `${dep}@${version}`], out);
  pinned[dep] = version;
}

const results = [];
for (const triple of built) {
  const { plat } = PLATFORMS[triple];
  const app = path.join(out, `app-${plat}`);
  mkdirSync(app, { recursive: true });
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, dependencies: pinned }));
  // npm runs on that platform's Node.js (emulated for arm64, in the musl namespace for musl),
  // so it checks the platform package's os/cpu/libc against the real thing (it refuses a
  // named tarball for another platform even with --cpu/--libc), and on the host the root's
  // postinstall check loads that platform's binary. Off the host the postinstall is skipped:
  // npm runs it with the `node` on PATH, the host's; the smoke below does the same load.
  const [file, ...args] = runners[triple]();
  const scripts = triple === hostTriple ? ['--foreground-scripts'] : ['--ignore-scripts'];
  run(file, [...args, npmCli, 'install', '--offline', '--no-audit', '--no-fund', ...scripts, rootPack.file, packed[triple].file], app);
  const installedPkg = JSON.parse(readFileSync(path.join(app, 'node_modules', pkg.name, 'package.json'), 'utf8'));
  if (!installedPkg.optionalDependencies?.[`${pkg.name}-${plat}`]) throw new Error(`installed root package has no optional dependency on ${pkg.name}-${plat}`);
  writeFileSync(path.join(app, 'smoke.cjs'), SMOKE);
  const start = Date.now();
  const res = JSON.parse(run(file, [...args, 'smoke.cjs'], app).trim().split('\n').pop());
  const expect = `node_modules/${pkg.name}-${plat}/${pkg.napi.binaryName}.${plat}.node`;
  if (res.reply !== 'pong:ping' || !res.fromServer || res.loaded.length !== 1 || res.loaded[0] !== expect) {
    throw new Error(`${plat} smoke: ${JSON.stringify(res)}, expected a pong from the server via ${expect}`);
  }
  results.push(`${plat}: installed ${path.basename(rootPack.file)} + ${path.basename(packed[triple].file)} offline; smoke (${res.arch}) got ${res.reply} via ${res.loaded[0]} in ${Date.now() - start} ms`);
}
for (const r of results) log(r);
log(`tarballs in ${path.relative(root, tarballs)}: ${readdirSync(tarballs).map((f) => `${f} (${statSync(path.join(tarballs, f)).size} B)`).join(', ')}`);
console.log(`release:dry: ${results.length} passed, 0 failed`);
