// The one place that loads the native addon.
//
// `native/index.js` is the loader that `napi build` generates (not committed). For this
// platform it tries, in order: the local build `native/netmessages.<platform>.node` (a source
// checkout, or a package that ships the binary), then the per-platform package
// `netmessages-<platform>` that npm installs as an optional dependency. When neither loads, the
// generated message only blames npm; this wrapper rethrows with the platform, what was looked
// for and what to do, keeping the loader's errors as `cause`.
import type * as NativeTypes from '../native/index.js';

/** Targets with prebuilt binaries (package.json `napi.targets`, as napi-rs names them). */
export const PREBUILT_PLATFORMS: readonly string[] = [
  'linux-x64-gnu',
  'linux-x64-musl',
  'linux-arm64-gnu',
  'linux-arm64-musl',
  'darwin-x64',
  'darwin-arm64',
  'win32-x64-msvc',
];

function isMusl(): boolean {
  if (process.platform !== 'linux') return false;
  try {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
    return !report?.header?.glibcVersionRuntime;
  } catch {
    return false;
  }
}

/** This process's platform in napi-rs's naming, e.g. `linux-x64-gnu`, `darwin-arm64`, `win32-x64-msvc`. */
export function platformName(): string {
  const { platform, arch } = process;
  if (platform === 'linux') return `${platform}-${arch}-${isMusl() ? 'musl' : 'gnu'}`;
  if (platform === 'win32') return `${platform}-${arch}-msvc`;
  return `${platform}-${arch}`;
}

/** The message thrown when no binary loads; exported for tests. */
export function loadFailureMessage(reason: unknown): string {
  const name = platformName();
  const supported = PREBUILT_PLATFORMS.includes(name);
  const lines = [
    `netmessages: no native binary could be loaded for ${name} (Node.js ${process.version}).`,
    `Looked for native/netmessages.${name}.node (a local build) and the package netmessages-${name}.`,
  ];
  if (supported) {
    lines.push(
      `A prebuilt binary exists for ${name}: npm installs it as an optional dependency, so reinstall with optional`,
      `dependencies enabled (not --omit=optional / --no-optional), e.g. remove node_modules and package-lock.json and`,
      `run \`npm install\` again (npm bug https://github.com/npm/cli/issues/4828), or add it directly with`,
      `\`npm install netmessages-${name}\`.`,
    );
  } else {
    lines.push(
      `There is no prebuilt binary for ${name} (prebuilt: ${PREBUILT_PLATFORMS.join(', ')}).`,
      'Build it from source: clone the repository, install a Rust toolchain (https://rustup.rs) and run',
      '`npm install` there (it builds native/), then depend on that folder.',
    );
  }
  const detail = reason instanceof Error ? reason.message : String(reason);
  if (/Cannot find module '\.\.\/native\/index\.js'/.test(detail)) {
    lines.push('The generated loader native/index.js is missing too: in a source checkout, run `npm run build:native`.');
  }
  lines.push(`Loader said: ${detail}`);
  return lines.join('\n');
}

function load(): typeof NativeTypes {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('../native/index.js');
  } catch (e) {
    const err = new Error(loadFailureMessage(e));
    (err as Error & { cause?: unknown }).cause = e;
    throw err;
  }
}

export const native: typeof NativeTypes = load();
export type {
  NativeEndpoint,
  NativeEvent,
  NativeSessionInfo,
  ConfigProblem,
  NativeSockets,
  NativeSocketsEvent,
  NativeConnInfo,
  BindFailure,
  NativeBacklog as NativeBacklogInfo,
  NativeEndpointStats as NativeEndpointStatsInfo,
} from '../native/index.js';
