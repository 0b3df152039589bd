#!/usr/bin/env bash
# Tests cross-built Linux binaries on this x86-64 machine (after scripts/cross/build.sh):
#
#   1. Rust tests of netcore and netdriver (the sans-IO core with its crypto vectors, and the
#      real-socket driver), built for the target with cargo-zigbuild and run natively
#      (x86-64 musl) or under qemu-user (arm64).
#   2. A loader smoke: the target's Node.js loads the package (dist/ + native/index.js + only
#      that target's binary) and does a reliable round trip on loopback.
#   3. The ava suite, unchanged, run by the target's Node.js (arm64 under qemu through a
#      binfmt_misc entry this script registers and removes, so that the child processes the
#      suite forks run under qemu too), in a copy of the package whose native/ holds only the
#      target's binary.
#
# Usage: scripts/cross/test.sh [--no-rust] [--no-ava] <triple>...   (default: the three)
# Needs root for the binfmt entry (arm64 ava); without it the arm64 ava step says so and stops.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
rust=1 ava=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-rust) rust=0; shift ;;
    --no-ava) ava=0; shift ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || set -- x86_64-unknown-linux-musl aarch64-unknown-linux-gnu aarch64-unknown-linux-musl
bash scripts/cross/setup.sh all >&2
# shellcheck disable=SC1091
. target/cross/env.sh
[ -f dist/index.js ] || npm run --silent build:ts
[ -f native/index.js ] || { echo "native/index.js missing: run npm install (or npm run build:native) first" >&2; exit 1; }

binfmt_name=netmessages-qemu-aarch64
binfmt_dir=/proc/sys/fs/binfmt_misc
binfmt_ours=0
cleanup() {
  if [ $binfmt_ours = 1 ] && [ -e "$binfmt_dir/$binfmt_name" ]; then echo -1 >"$binfmt_dir/$binfmt_name"; fi
}
trap cleanup EXIT

# Makes the kernel run arm64 ELF files through qemu-aarch64-static; 0 if it can.
ensure_binfmt() {
  [ -e "$binfmt_dir/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt_dir" 2>/dev/null || return 1
  for f in "$binfmt_dir"/qemu-aarch64 "$binfmt_dir/$binfmt_name"; do
    if [ -e "$f" ] && grep -q '^enabled' "$f"; then return 0; fi
  done
  # The ELF header of an arm64 executable (e_machine 0xb7), as Debian's qemu-user-static has it;
  # F: the kernel opens the interpreter now, so it works from any mount namespace.
  local magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
  local mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
  echo ":$binfmt_name:M::$magic:$mask:/usr/bin/qemu-aarch64-static:F" >"$binfmt_dir/register" 2>/dev/null || return 1
  binfmt_ours=1
}

# Runs a command as on the target's distribution (musl: scripts/cross/as-musl.sh).
as_on() {
  local libc="$1"; shift
  if [ "$libc" = musl ]; then bash "$root/scripts/cross/as-musl.sh" "$musl_arch" "$@"; else "$@"; fi
}

failed=()
summary=()
note() { summary+=("$1"); echo "[cross/test] $1" >&2; }

for triple in "$@"; do
  case "$triple" in
    x86_64-unknown-linux-musl) plat=linux-x64-musl node="$NODE_LINUX_X64_MUSL" runner="" libc=musl
      musl_arch=x86_64 ;;
    aarch64-unknown-linux-gnu) plat=linux-arm64-gnu node="$NODE_LINUX_ARM64_GNU" runner="qemu-aarch64-static -L $ARM64_GNU_SYSROOT" libc=gnu ;;
    aarch64-unknown-linux-musl) plat=linux-arm64-musl node="$NODE_LINUX_ARM64_MUSL" runner="qemu-aarch64-static" libc=musl
      musl_arch=aarch64 ;;
    *) echo "unsupported target $triple" >&2; exit 2 ;;
  esac
  bin="target/cross/artifacts/bindings-$triple/netmessages.$plat.node"
  [ -f "$bin" ] || bash scripts/cross/build.sh --no-setup "$triple" >&2
  # QEMU_LD_PREFIX: where qemu finds the arm64 glibc loader and libraries (gnu only; the musl
  # Node binaries name their loader by absolute path).
  envs=()
  case "$triple" in aarch64-*-gnu) envs=(QEMU_LD_PREFIX="$ARM64_GNU_SYSROOT") ;; esac

  if [ $rust = 1 ]; then
    zig_target="$triple"
    case "$triple" in *-gnu) zig_target="$triple.2.17" ;; esac
    runner_env=()
    # Emulated, the seeded simulation suites run 100 seeds instead of 1,000 (their own knob)
    # so the run takes minutes, not an hour; natively they run in full.
    [ -z "$runner" ] || runner_env=("CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUNNER=$runner"
      "NETMESSAGES_SIM_SEEDS=${NETMESSAGES_SIM_SEEDS:-100}")
    start=$(date +%s)
    log="target/cross/rust-test-$triple.log"
    # --release: reuses the dependencies the napi build compiled for this target.
    if env "${runner_env[@]}" cargo-zigbuild test --release --target "$zig_target" -p netcore -p netdriver >"$log" 2>&1; then
      note "$triple rust: $(grep -E '^test result' "$log" | awk '{p+=$4; f+=$6; i+=$8} END {print p" passed, "f" failed, "i" ignored"}') in $(($(date +%s) - start)) s"
    else
      note "$triple rust: FAILED (see $log): $(grep -E '^test result|panicked|error' "$log" | head -3 | tr '\n' ' ')"
      failed+=("$triple rust")
    fi
  fi

  # A copy of the package as the suite sees it, with only this target's binary in native/.
  suite="target/cross/suite-$plat"
  rm -rf "$suite" && mkdir -p "$suite"
  git ls-files -z | xargs -0 cp --parents -t "$suite"
  cp -r dist "$suite/"
  mkdir -p "$suite/native" && cp native/index.js native/index.d.ts "$suite/native/" && cp "$bin" "$suite/native/"
  ln -s "$root/node_modules" "$suite/node_modules"

  smoke="$(cat <<'EOF'
const { NetworkingMessages, SendFlags, EResult, } = require(process.argv[1]);
(async () => {
  const server = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
  server.on('sessionRequest', ({ identityRemote }) => server.acceptSessionWithUser(identityRemote));
  server.on('messages', (ch) => { for (const m of server.receiveMessagesOnChannel(ch)) server.sendMessageToUser(m.identityPeer, 'pong:' + m.data, SendFlags.Reliable, ch); });
  const client = await NetworkingMessages.create({ bind: '127.0.0.1:0' });
  if (client.sendMessageToUser(server.identity, 'ping', SendFlags.Reliable, 1) !== EResult.OK) throw new Error('send failed');
  for await (const m of client.messages(1)) { console.log(`${process.arch} ${m.data} via ${Object.keys(require.cache).find((k) => k.endsWith('.node')).split('/').pop()}`); break; }
  await Promise.all([client.close(), server.close()]);
})().catch((e) => { console.error(e); process.exit(1); });
EOF
)"
  start=$(date +%s)
  if out="$(as_on $libc env "${envs[@]}" $runner "$node" -e "$smoke" "$root/$suite/dist/index.js" 2>&1)"; then
    note "$triple loader smoke: $out ($(($(date +%s) - start)) s)"
  else
    note "$triple loader smoke: FAILED: $out"
    failed+=("$triple smoke")
    continue
  fi

  [ $ava = 1 ] || continue
  if [ -n "$runner" ] && ! ensure_binfmt; then
    note "$triple ava: NOT RUN: cannot register a binfmt_misc entry for qemu-aarch64 (needs root and binfmt_misc), so the suite's child processes cannot run"
    failed+=("$triple ava (not run)")
    continue
  fi
  log="target/cross/ava-$plat.log"
  start=$(date +%s)
  # The target's node first on PATH: the suite's npm and node child processes use it too.
  # Emulated, everything is several times slower: longer per-test timeout, fewer at once.
  if (cd "$suite" && as_on $libc env "${envs[@]}" PATH="$(dirname "$node"):$PATH" "$node" node_modules/ava/entrypoints/cli.mjs \
    --timeout=300s --concurrency=2 >"$root/$log" 2>&1); then
    note "$triple ava: $(grep -E 'tests? passed|known failure|skipped|todo' "$log" | tr -s ' \n' ' ') in $(($(date +%s) - start)) s"
  else
    note "$triple ava: FAILED in $(($(date +%s) - start)) s (see $log): $(grep -E 'tests? (passed|failed)|✘' "$log" | head -8 | tr -s ' \n' ' ')"
    failed+=("$triple ava")
  fi
done

echo
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
