#!/usr/bin/env bash
# Runs every benchmark binary in $BUILD/bench and prints its table, after the machine it ran on.
# Figures are printed, never asserted (DESIGN.md "Targets"). Starts the peers the benches use
# (scripts/peers/<name>: a throwaway PostgreSQL, fsync on, a Kafka broker, a Cassandra node,
# moto's S3, the Pub/Sub, Bigtable and BigQuery emulators) and stops them on exit; a bench that
# fails is reported and the others still run (the script then exits 1).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"

PEERS=(postgres kafka cassandra pubsub moto bigquery bigtable clickhouse)   # names under scripts/peers/ whose servers the benches need
stop_peers() {
  for p in "${PEERS[@]}"; do bash "scripts/peers/$p" stop || true; done
}
trap stop_peers EXIT
for p in "${PEERS[@]}"; do
  if exports=$(bash "scripts/peers/$p" start); then eval "$exports"; else echo "bench.sh: peer $p did not start" >&2; fi
done

failed=()
for bin in "$BUILD"/bench/*_bench; do
  [ -x "$bin" ] || continue
  echo; echo "== $(basename "$bin") (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  AQUIFER_BENCH_DIR=$(mktemp -d /tmp/aquifer-bench.XXXXXX)
  AQUIFER_BENCH_DIR=$AQUIFER_BENCH_DIR "$bin" || failed+=("$(basename "$bin")")
  rm -rf "$AQUIFER_BENCH_DIR"
done
# Memory again with a 64 MiB DuckDB memory_limit: its buffer pool fills within the 10 M
# records, so RSS itself must level off once every cache is full (issue 10, goal 4).
if [ -x "$BUILD/bench/serve_bench" ]; then
  echo; echo "== serve_bench memory, DuckDB memory_limit 64 MiB (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  AQUIFER_BENCH_DIR=$(mktemp -d /tmp/aquifer-bench.XXXXXX)
  AQUIFER_BENCH_DIR=$AQUIFER_BENCH_DIR AQUIFER_BENCH_DUCKDB_MEMORY_MIB=64 AQUIFER_BENCH_ONLY=memory \
    "$BUILD/bench/serve_bench" || failed+=("serve_bench (memory, 64 MiB)")
  rm -rf "$AQUIFER_BENCH_DIR"
fi
echo; echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench: FAILED: ${failed[*]}"
  exit 1
fi
