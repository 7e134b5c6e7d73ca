#!/usr/bin/env bash
# Runs every libFuzzer target in $FUZZ_BUILD/fuzz for $1 seconds each, starting from
# the checked-in seeds in fuzz/corpus/<target>/. New inputs go to a scratch folder,
# crashes to $FUZZ_BUILD/crashes/. Exits non-zero if any target finds a crash.
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
mkdir -p "$FUZZ_BUILD/crashes"
failed=0; ran=0
for bin in "$FUZZ_BUILD"/fuzz/*_fuzz; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  seeds="fuzz/corpus/${name%_fuzz}"
  work=$(mktemp -d)
  if "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="$FUZZ_BUILD/crashes/$name-" "$work" "$seeds" >"$FUZZ_BUILD/$name.log" 2>&1; then
    echo "fuzz: $name ok ($(ls "$seeds" | wc -l) seeds, $(grep -o "number_of_executed_units: [0-9]*" "$FUZZ_BUILD/$name.log" | awk "{print \$2}") runs in ${SECONDS_EACH}s)"
  else
    echo "fuzz: $name FAILED, see $FUZZ_BUILD/$name.log"; tail -30 "$FUZZ_BUILD/$name.log"; failed=$((failed+1))
  fi
  rm -rf "$work"; ran=$((ran+1))
done
echo "fuzz: $((ran-failed)) passed, $failed failed"
[ "$ran" -gt 0 ] && [ "$failed" -eq 0 ]
