#!/usr/bin/env bash
# `make fuzz`: runs every libFuzzer target in $FUZZ_BUILD/fuzz from its corpus
# fuzz/corpus/<name>/ for $1 seconds each (FUZZ_SECONDS, default 60), or
# FUZZ_SECONDS_<name> for one target (FUZZ_SECONDS_http_request=600), and merges
# the new inputs that add coverage back into fuzz/corpus/<name>/ (FUZZ_MERGE=0: don't).
# FUZZ_TARGETS="a b" runs only those. Crashes land in $FUZZ_BUILD/fuzz/crashes/.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
export FUZZ_MERGE=${FUZZ_MERGE:-1}
failed=0; ran=0
for bin in "$FUZZ_BUILD"/fuzz/*_fuzz; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin"); name=${name%_fuzz}
  if [ -n "${FUZZ_TARGETS:-}" ] && [[ " $FUZZ_TARGETS " != *" $name "* ]]; then continue; fi
  per_target=FUZZ_SECONDS_$name
  bash scripts/fuzz-target.sh "$bin" "fuzz/corpus/$name" "${!per_target:-$seconds}" || failed=$((failed+1))
  ran=$((ran+1))
done
echo "fuzz: $((ran-failed)) passed, $failed failed"
if [ "$FUZZ_MERGE" = 1 ]; then git status --short fuzz/corpus | sed 's/^/fuzz: corpus change: /' | head -50; fi
[ "$ran" -gt 0 ] && [ "$failed" -eq 0 ]
