#!/usr/bin/env bash
# Runs every benchmark binary in $BUILD/bench and prints its table, after the machine it ran on.
# Figures are printed, never asserted (DESIGN.md "Targets").
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
for bin in "$BUILD"/bench/*_bench; do
  [ -x "$bin" ] || continue
  echo; echo "== $(basename "$bin")"
  AQUIFER_BENCH_DIR=$(mktemp -d /tmp/aquifer-bench.XXXXXX)
  AQUIFER_BENCH_DIR=$AQUIFER_BENCH_DIR "$bin"
  rm -rf "$AQUIFER_BENCH_DIR"
done
