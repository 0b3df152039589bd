#!/bin/sh
# RUSTC_WRAPPER for fuzz builds that keep coverage instrumentation to some crates only.
# cargo-fuzz puts its SanitizerCoverage flags in RUSTFLAGS, so every crate of the build gets
# coverage counters; for a target whose inputs only steer one crate, the counters of its
# dependencies (hashes, the CSPRNG, varint loops) are features libFuzzer walks after every
# execution without them guiding anything. Cargo runs this as `fuzz-rustc.sh <rustc> <args>`:
#
# - a crate not named in NETCORE_FUZZ_COVERAGE_CRATES (comma-separated crate names) loses the
#   coverage flags; every other flag (the sanitizer, `--cfg fuzzing`, codegen) stays, so the
#   crates still link together and a sanitizer still checks all of them;
# - a named crate keeps edge coverage but at level 3, not cargo-fuzz's 4: level 4 adds a
#   callback on every indirect call, which only feeds libFuzzer's value profile, and that is
#   off unless a run passes -use_value_profile=1 (so no feature is lost);
# - probes without a crate name (`rustc -vV`) pass as they are.
#
# Used by scripts/fuzz.mjs (see docs/RELIABILITY.md). Plain sh and `exec`, so cargo's
# jobserver descriptors reach rustc.
rustc=$1
shift
crate=
prev=
for a in "$@"; do
  if [ "$prev" = --crate-name ]; then crate=$a; fi
  prev=$a
done
if [ -z "$crate" ]; then exec "$rustc" "$@"; fi
case ",$NETCORE_FUZZ_COVERAGE_CRATES," in
  *",$crate,"*) keep=1 ;;
  *) keep= ;;
esac
# Rebuild the argument list: each argument is shifted off the front and appended again,
# changed or dropped as above.
n=$#
i=0
while [ "$i" -lt "$n" ]; do
  a=$1
  shift
  case $a in
    -Cllvm-args=-sanitizer-coverage-level=4)
      if [ -n "$keep" ]; then set -- "$@" -Cllvm-args=-sanitizer-coverage-level=3; fi ;;
    -Cpasses=sancov-module | -Cllvm-args=-sanitizer-coverage-*)
      if [ -n "$keep" ]; then set -- "$@" "$a"; fi ;;
    *) set -- "$@" "$a" ;;
  esac
  i=$((i + 1))
done
exec "$rustc" "$@"
