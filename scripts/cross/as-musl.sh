#!/usr/bin/env bash
# Runs a command as on a musl distribution (Alpine): in a private mount namespace where
# /usr/bin/ldd is musl's loader, as it is there. napi's generated loader reads that file to
# tell musl from glibc, and this host's is glibc's. Nothing outside the namespace changes.
# Usage: scripts/cross/as-musl.sh x86_64|aarch64 command [args...]   (needs root: unshare -m)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
arch="$1"; shift
ldso="$root/target/cross/musl-root/usr/lib/$arch-linux-musl/libc.so"
[ -x "$ldso" ] || { echo "no musl loader at $ldso: run scripts/cross/setup.sh musl" >&2; exit 1; }
exec unshare -m --propagation private sh -c 'mount --bind "$0" /usr/bin/ldd && exec "$@"' "$ldso" "$@"
