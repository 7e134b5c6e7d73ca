#!/usr/bin/env bash
# fuzz-target.sh BINARY SEEDS_DIR SECONDS: runs one libFuzzer target from its checked-in
# seeds for SECONDS; new inputs go to a scratch folder, crashes next to the binary.
# Exits non-zero (printing the report) when the target crashes or a sanitizer fires.
set -uo pipefail
bin=$1; seeds=$2; seconds=$3
name=$(basename "$bin")
if [ ! -x "$bin" ]; then echo "fuzz: $bin is missing: build it with 'make fuzz-build'"; exit 1; fi
if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then echo "fuzz: no seeds in $seeds"; exit 1; fi
dir=$(dirname "$bin")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$dir/crashes"
log="$dir/$name.log"
if "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
     -artifact_prefix="$dir/crashes/$name-" "$work" "$seeds" >"$log" 2>&1; then
  echo "fuzz: $name ok ($(ls "$seeds" | wc -l) seeds, $(grep -o 'number_of_executed_units: [0-9]*' "$log" | awk '{print $2}') runs in ${seconds}s)"
else
  echo "fuzz: $name FAILED (log $log)"; tail -40 "$log"; exit 1
fi
