#!/usr/bin/env bash
# Runs the whole suite: starts every real peer the tests need, runs ctest (unit,
# conformance, crash, and each libFuzzer target briefly), then the suites each sanitizer build
# of SAN_BUILDS built (ThreadSanitizer, ASan+UBSan; target sanitizer_tests), and stops the peers
# (also on failure). Every ctest prints its summary; any failure fails the script at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SAN_BUILDS=${SAN_BUILDS:-}
JOBS=${JOBS:-$(nproc)}

PEERS=(postgres kafka cassandra pubsub moto bigquery bigtable clickhouse)   # names under scripts/peers/ whose servers the suites need
stop_peers() {
  for p in "${PEERS[@]+"${PEERS[@]}"}"; do bash "scripts/peers/$p" stop || true; done
}
trap stop_peers EXIT
for p in "${PEERS[@]+"${PEERS[@]}"}"; do
  # each start script prints `export NAME=value` lines for the endpoints it serves
  # (a peer that fails to start is reported; its suites then fail and name the missing variable)
  if exports=$(bash "scripts/peers/$p" start); then eval "$exports"; else echo "test.sh: peer $p did not start" >&2; fi
done

failed=()
ctest --test-dir "$BUILD" --output-on-failure -j "$JOBS" --timeout 900 || failed+=("$BUILD")

for b in $SAN_BUILDS; do
  echo "=== $b: the suites of target sanitizer_tests ($(grep -o 'AQUIFER_WITH_[AT]SAN:BOOL=ON' "$b/CMakeCache.txt" || true))"
  (
    # shellcheck source=sanitizers/env.sh
    source scripts/sanitizers/env.sh "$b"
    rm -f "$SANITIZER_REPORTS"/*
    rc=0
    start=$SECONDS
    # only the suites built there: the other test targets are placeholders named *_NOT_BUILT
    ctest --test-dir "$b" -E '_NOT_BUILT$' --output-on-failure -j "$JOBS" --timeout 1800 || rc=1
    echo "=== $b: ctest took $((SECONDS - start)) s"
    # Reports of child processes (and of the test binaries themselves) land here, not in ctest's output.
    for r in "$SANITIZER_REPORTS"/*; do
      [ -e "$r" ] || continue
      echo "=== sanitizer report $r"; cat "$r"; rc=1
    done
    exit $rc
  ) || failed+=("$b")
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "test: FAILED in ${failed[*]}"
  exit 1
fi
