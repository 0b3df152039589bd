#!/usr/bin/env node
// Builds Valve's GameNetworkingSockets (GNS) from its source and our small C++ peer program
// against it, for the interop tests and the throughput script. Nothing of GNS is committed:
// the source comes from the tarball in ../shared/vendor/ (or a checkout named by GNS_SRC) and
// everything built lands under .cache/gns/ (ignored by git).
//
//   node interop/build-gns.mjs            build if needed, print the peer's path as JSON
//   node interop/build-gns.mjs --check    only say whether a source exists (exit 0) or not (exit 3)
//
// GNS_SRC=/path/to/checkout builds that instead; GNS_TARBALL=/path/to/file.tar.gz another tarball.
//
// The GNS library is built once per source: a tarball's build is keyed by the tarball's
// SHA-256 (and by this script's build recipe), so it is rebuilt only when either changes; a
// GNS_SRC checkout gets one build folder per path, which ninja brings up to date on each run.
// The peer is a small CMake project beside this file; ninja rebuilds it when it changed.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
export const TARBALL_NAME = 'GameNetworkingSockets-e707b3a.tar.gz';
const CACHE = process.env.GNS_CACHE_DIR ? path.resolve(process.env.GNS_CACHE_DIR) : path.join(root, '.cache', 'gns');
const PEER_SRC = path.join(here, 'gns-peer');

// The GNS configure line (see ../shared/vendor/README.md). A change here changes the cache key.
const GNS_CMAKE_ARGS = [
  '-G',
  'Ninja',
  '-DCMAKE_BUILD_TYPE=Release',
  '-DBUILD_STATIC_LIB=OFF',
  '-DBUILD_SHARED_LIB=ON',
  '-DBUILD_EXAMPLES=OFF',
  '-DBUILD_TESTS=OFF',
  '-DCMAKE_INSTALL_LIBDIR=lib',
];
const JOBS = process.env.GNS_JOBS ?? '2'; // the machine is shared: never more than -j2 by default

/**
 * Where the GNS source is: `{ kind: 'dir', dir }` for GNS_SRC, `{ kind: 'tarball', file }` for
 * the vendor tarball (GNS_TARBALL names another), `{ kind: 'none', reason }` when there is none
 * (the tests skip), or `{ kind: 'bad', reason }` when GNS_SRC names no GNS checkout (an error:
 * the caller asked for that source).
 */
export function gnsSource() {
  const env = process.env.GNS_SRC;
  if (env) {
    const dir = path.resolve(env);
    if (existsSync(path.join(dir, 'CMakeLists.txt')) && existsSync(path.join(dir, 'include', 'steam'))) {
      return { kind: 'dir', dir };
    }
    return { kind: 'bad', reason: `GNS_SRC=${env} is not a GameNetworkingSockets checkout (no CMakeLists.txt and include/steam/)` };
  }
  const candidates = process.env.GNS_TARBALL
    ? [process.env.GNS_TARBALL]
    : [path.join(root, '..', 'shared', 'vendor', TARBALL_NAME), path.join(root, 'shared', 'vendor', TARBALL_NAME)];
  for (const file of candidates) {
    if (existsSync(file)) return { kind: 'tarball', file: path.resolve(file) };
  }
  return {
    kind: 'none',
    reason: `no GameNetworkingSockets source: GNS_SRC is not set and ${candidates.map((c) => path.relative(root, c)).join(' / ')} does not exist`,
  };
}

async function sha256File(file) {
  const h = createHash('sha256');
  await new Promise((resolve, reject) => {
    createReadStream(file).on('data', (d) => h.update(d)).on('end', resolve).on('error', reject);
  });
  return h.digest('hex');
}

function run(cmd, args, opts, log) {
  log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', maxBuffer: 256 << 20, ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    const tail = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.trim().split('\n').slice(-40).join('\n');
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}):\n${tail}`);
  }
  return r.stdout;
}

function checkTools() {
  const missing = [];
  for (const [tool, pkg] of [
    ['cmake', 'cmake'],
    ['ninja', 'ninja-build'],
    ['g++', 'g++'],
    ['protoc', 'protobuf-compiler'],
  ]) {
    const r = spawnSync(tool, ['--version'], { stdio: 'ignore' });
    if (r.status !== 0) missing.push(pkg);
  }
  if (!existsSync('/usr/include/nlohmann/json.hpp')) missing.push('nlohmann-json3-dev');
  if (missing.length > 0) {
    throw new Error(
      `building GameNetworkingSockets needs: ${missing.join(', ')} (Debian: apt-get install -y cmake ninja-build g++ libprotobuf-dev protobuf-compiler libssl-dev nlohmann-json3-dev)`,
    );
  }
}

/** A lock folder so that two processes do not build into the same folder at once. */
async function withLock(dir, fn, log) {
  mkdirSync(dir, { recursive: true });
  const lock = path.join(dir, '.lock');
  const deadline = Date.now() + 20 * 60 * 1000;
  for (;;) {
    try {
      const fd = openSync(lock, 'wx');
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      // A lock whose owner died is stale.
      let owner = 0;
      try {
        owner = Number(readFileSync(lock, 'utf8'));
      } catch {}
      let alive = false;
      if (owner > 0) {
        try {
          process.kill(owner, 0);
          alive = true;
        } catch {}
      }
      if (!alive) {
        try {
          unlinkSync(lock);
        } catch {}
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for the build lock ${lock} (pid ${owner})`);
      log(`waiting for another build (pid ${owner})...`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  try {
    return await fn();
  } finally {
    try {
      unlinkSync(lock);
    } catch {}
  }
}

/**
 * Builds what is missing or stale and returns `{ peer, libDir, buildDir, source, gnsBuilt,
 * seconds }`. Throws when a source exists but the build fails.
 */
export async function ensureGnsPeer({ log = (m) => console.error(`[gns] ${m}`) } = {}) {
  const src = gnsSource();
  if (src.kind === 'none' || src.kind === 'bad') throw new Error(src.reason);
  checkTools();
  const recipe = createHash('sha256').update(JSON.stringify(GNS_CMAKE_ARGS)).digest('hex').slice(0, 8);
  let key;
  if (src.kind === 'tarball') key = `${(await sha256File(src.file)).slice(0, 16)}-${recipe}`;
  else key = `src-${createHash('sha256').update(src.dir).digest('hex').slice(0, 12)}-${recipe}`;
  const base = path.join(CACHE, key);
  const t0 = Date.now();
  let gnsBuilt = false;
  const result = await withLock(
    base,
    async () => {
      const install = path.join(base, 'install');
      const stamp = path.join(install, '.complete');
      if (src.kind === 'dir' || !existsSync(stamp)) {
        let srcDir = src.dir;
        if (src.kind === 'tarball') {
          const unpack = path.join(base, 'src');
          rmSync(unpack, { recursive: true, force: true });
          mkdirSync(unpack, { recursive: true });
          log(`unpacking ${src.file}`);
          run('tar', ['-xzf', src.file, '-C', unpack], {}, log);
          srcDir = path.join(unpack, 'GameNetworkingSockets');
          if (!existsSync(path.join(srcDir, 'CMakeLists.txt'))) throw new Error(`${src.file} did not unpack to GameNetworkingSockets/`);
        }
        const build = path.join(base, 'build');
        mkdirSync(build, { recursive: true });
        if (!existsSync(path.join(build, 'build.ninja'))) {
          log('configuring GameNetworkingSockets');
          run('cmake', [...GNS_CMAKE_ARGS, `-DCMAKE_INSTALL_PREFIX=${install}`, srcDir], { cwd: build }, log);
        }
        log(`building GameNetworkingSockets (ninja -j${JOBS}; about 2.5 minutes on 2 cores)`);
        const tb = Date.now();
        run('ninja', [`-j${JOBS}`], { cwd: build }, log);
        run('cmake', ['--install', '.'], { cwd: build }, log);
        writeFileSync(stamp, `${new Date().toISOString()} ${((Date.now() - tb) / 1000).toFixed(1)}s\n`);
        gnsBuilt = true;
        if (src.kind === 'tarball') rmSync(path.join(base, 'src'), { recursive: true, force: true });
      }
      // The peer: its own CMake project, found GNS through the installed package config.
      const peerBuild = path.join(base, 'peer');
      mkdirSync(peerBuild, { recursive: true });
      if (!existsSync(path.join(peerBuild, 'build.ninja'))) {
        run('cmake', ['-G', 'Ninja', '-DCMAKE_BUILD_TYPE=Release', `-DCMAKE_PREFIX_PATH=${install}`, PEER_SRC], { cwd: peerBuild }, log);
      }
      run('ninja', [`-j${JOBS}`], { cwd: peerBuild }, log);
      const peer = path.join(peerBuild, 'gns-peer');
      statSync(peer);
      return { peer, libDir: path.join(install, 'lib'), buildDir: base };
    },
    log,
  );
  return { ...result, source: src.kind === 'tarball' ? src.file : src.dir, gnsBuilt, seconds: (Date.now() - t0) / 1000 };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const src = gnsSource();
  if (process.argv.includes('--check')) {
    console.log(src.reason ?? `GNS source: ${src.file ?? src.dir}`);
    process.exit(src.kind === 'none' ? 3 : src.kind === 'bad' ? 1 : 0);
  }
  if (src.kind === 'none') {
    console.error(`[gns] skipped: ${src.reason}`);
    process.exit(0);
  }
  if (src.kind === 'bad') {
    console.error(`[gns] ${src.reason}`);
    process.exit(1);
  }
  try {
    const r = await ensureGnsPeer();
    console.log(JSON.stringify(r));
  } catch (e) {
    console.error(`[gns] ${e.message}`);
    process.exit(1);
  }
}
