#!/usr/bin/env bash
# Runs the whole suite: starts every real peer the tests need, runs ctest,
# runs each fuzz target briefly on its seed corpus, stops the peers (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
JOBS=${JOBS:-$(nproc)}

PEERS=()   # names under scripts/peers/ whose servers the suites need
stop_peers() {
  for p in "${PEERS[@]+"${PEERS[@]}"}"; do bash "scripts/peers/$p" stop || true; done
}
trap stop_peers EXIT
for p in "${PEERS[@]+"${PEERS[@]}"}"; do
  # each start script prints `export NAME=value` lines for the endpoints it serves
  eval "$(bash "scripts/peers/$p" start)"
done

status=0
ctest --test-dir "$BUILD" --output-on-failure -j "$JOBS" --timeout 900 || status=1

# Every fuzz target for a few seconds under libFuzzer with ASan+UBSan, from the checked-in seeds.
bash scripts/fuzz.sh "${FUZZ_TEST_SECONDS:-10}" || status=1

exit $status
