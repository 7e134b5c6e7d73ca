#!/usr/bin/env bash
# Runs every libFuzzer target in $FUZZ_BUILD/fuzz for $1 seconds each (`make fuzz`).
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
failed=0; ran=0
for bin in "$FUZZ_BUILD"/fuzz/*_fuzz; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin"); name=${name%_fuzz}
  bash scripts/fuzz-target.sh "$bin" "fuzz/corpus/$name" "$seconds" || failed=$((failed+1))
  ran=$((ran+1))
done
echo "fuzz: $((ran-failed)) passed, $failed failed"
[ "$ran" -gt 0 ] && [ "$failed" -eq 0 ]
