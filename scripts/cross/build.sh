#!/usr/bin/env bash
# Builds the addon for Linux targets with `napi build -x` (cargo-zigbuild + Zig, no C cross
# toolchain per target), the way release.yml does, then checks what each binary links against:
#   *-gnu   no glibc symbol version above 2.17 (the baseline of the .2.17 Zig target, the same
#           as napi's cross toolchain in CI; Node.js itself needs 2.28)
#   *-musl  no glibc symbol versions at all, and only musl's libc among the needed libraries
# Each binary lands in target/cross/artifacts/bindings-<triple>/netmessages.<platform>.node, the
# layout `napi artifacts` reads. Prints one line per target: size and the largest glibc version.
#
# Usage: scripts/cross/build.sh [--no-setup] <triple>...   (default: the three cross targets)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
setup=1
if [ "${1:-}" = --no-setup ]; then setup=0; shift; fi
[ $# -gt 0 ] || set -- x86_64-unknown-linux-musl aarch64-unknown-linux-gnu aarch64-unknown-linux-musl
if [ $setup = 1 ]; then bash scripts/cross/setup.sh zig targets; fi
# shellcheck disable=SC1091
. target/cross/env.sh

platform_of() {
  case "$1" in
    x86_64-unknown-linux-gnu) echo linux-x64-gnu ;;
    x86_64-unknown-linux-musl) echo linux-x64-musl ;;
    aarch64-unknown-linux-gnu) echo linux-arm64-gnu ;;
    aarch64-unknown-linux-musl) echo linux-arm64-musl ;;
    *) echo "not a Linux target this script builds: $1" >&2; return 2 ;;
  esac
}

for triple in "$@"; do
  plat="$(platform_of "$triple")"
  out="target/cross/artifacts/bindings-$triple"
  mkdir -p "$out"
  zig_target="$triple"
  case "$triple" in *-gnu) zig_target="$triple.2.17" ;; esac
  echo "[cross/build] $triple (zig target $zig_target)" >&2
  start=$(date +%s)
  npx --no-install napi build --platform --release --manifest-path binding/Cargo.toml \
    --package-json-path package.json --output-dir "$out" --no-js \
    --target "$zig_target" -x >&2
  rm -f "$out/index.d.ts"
  secs=$(($(date +%s) - start))
  bin="$out/netmessages.$plat.node"
  [ -f "$bin" ] || { echo "no $bin after the build" >&2; exit 1; }
  versions="$(objdump -T "$bin" | grep -oE 'GLIBC_[0-9.]+' | sort -uV || true)"
  needed="$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
  case "$triple" in
    *-musl)
      if [ -n "$versions" ]; then echo "$bin references glibc symbol versions: $versions" >&2; exit 1; fi
      for lib in $needed; do
        case "$lib" in libc.so | libc.musl-*.so.1) ;; *) echo "$bin needs $lib (not musl's libc)" >&2; exit 1 ;; esac
      done
      top=none ;;
    *)
      top="$(echo "$versions" | tail -1)"
      if [ "$(printf '%s\nGLIBC_2.17\n' "$top" | sort -V | tail -1)" != GLIBC_2.17 ]; then
        echo "$bin needs $top, above the 2.17 baseline" >&2; exit 1
      fi ;;
  esac
  file="$(file -b "$bin" | cut -d, -f1-2)"
  printf '%s\t%s bytes\tglibc max: %s\tneeds: %s\t%ss\t%s\n' "$triple" "$(stat -c %s "$bin")" "$top" "$needed" "$secs" "$file"
done
