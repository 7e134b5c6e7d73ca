#!/usr/bin/env bash
# fuzz-target.sh BINARY SEEDS_DIR SECONDS: runs one libFuzzer target from its checked-in
# seeds for SECONDS; new inputs go to a scratch folder, crashes next to the binary.
# Exits non-zero (printing the report) when the target crashes or a sanitizer fires.
# FUZZ_MERGE=1 (make fuzz): afterwards, the inputs of the scratch folder that reach
# code edges the seeds do not (libFuzzer -merge=1 on edges) are added to SEEDS_DIR, so the checked-in
# corpus grows only by what is new. Prints one summary line: runs, cov and ft (libFuzzer's
# edge coverage and features at the end of the run), seeds before/after.
set -uo pipefail
bin=$1; seeds=$2; seconds=$3
name=$(basename "$bin")
if [ ! -x "$bin" ]; then echo "fuzz: $bin is missing: build it with 'make fuzz-build'"; exit 1; fi
if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then echo "fuzz: no seeds in $seeds"; exit 1; fi
dir=$(dirname "$bin")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$dir/crashes"
log="$dir/$name.log"
before=$(ls "$seeds" | wc -l)
# fuzz/<name>.flags: extra libFuzzer flags of one target (http_request: -detect_leaks=0, since
# the engine's background threads hold allocations across inputs, which the per-input leak
# check reports; ASan's other checks stay on).
flags=()
flag_file="$(dirname "$0")/../fuzz/${name%_fuzz}.flags"
[ -f "$flag_file" ] && read -r -a flags < "$flag_file"
if "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 "${flags[@]}" \
     -max_len="${FUZZ_MAX_LEN:-4096}" \
     -artifact_prefix="$dir/crashes/$name-" "$work" "$seeds" >"$log" 2>&1; then
  runs=$(grep -o 'number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
  [ -n "$done_line" ] || done_line=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$done_line" | awk '{print $2}')
  ft=$(grep -o 'ft: [0-9]*' <<<"$done_line" | awk '{print $2}')
  after=$before
  if [ "${FUZZ_MERGE:-0}" = 1 ] && [ -n "$(ls -A "$work")" ]; then
    # Edges only (-use_counters=0): an input joins the corpus for code it reaches first,
    # not for another hit count of known code, which keeps the checked-in corpus small.
    if "$bin" -merge=1 "${flags[@]}" -use_counters=0 -use_value_profile=0 -timeout=10 -rss_limit_mb=2048 \
         -max_len="${FUZZ_MAX_LEN:-4096}" "$seeds" "$work" >"$log.merge" 2>&1; then
      after=$(ls "$seeds" | wc -l)
    else
      echo "fuzz: $name: merging into $seeds failed (log $log.merge)"; tail -20 "$log.merge"; exit 1
    fi
  fi
  echo "fuzz: $name ok: ${runs:-?} runs in ${seconds}s, cov ${cov:-?}, ft ${ft:-?}, seeds $before -> $after"
else
  echo "fuzz: $name FAILED (log $log)"; tail -40 "$log"; exit 1
fi
