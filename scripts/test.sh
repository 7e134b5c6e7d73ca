#!/usr/bin/env bash
# Runs the whole suite: starts every real peer the tests need, runs ctest (unit,
# conformance, crash, and each libFuzzer target briefly), stops the peers (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
JOBS=${JOBS:-$(nproc)}

PEERS=(postgres)   # names under scripts/peers/ whose servers the suites need
stop_peers() {
  for p in "${PEERS[@]+"${PEERS[@]}"}"; do bash "scripts/peers/$p" stop || true; done
}
trap stop_peers EXIT
for p in "${PEERS[@]+"${PEERS[@]}"}"; do
  # each start script prints `export NAME=value` lines for the endpoints it serves
  # (a peer that fails to start is reported; its suites then fail and name the missing variable)
  if exports=$(bash "scripts/peers/$p" start); then eval "$exports"; else echo "test.sh: peer $p did not start" >&2; fi
done

ctest --test-dir "$BUILD" --output-on-failure -j "$JOBS" --timeout 900
