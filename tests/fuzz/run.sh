#!/bin/sh
# Runs one libFuzzer target for $PODTAP_FUZZ_SECONDS (default 20) from its committed seeds, keeps
# what it learns in <work>/corpus/<name> and any crash in <work>/artifacts, and prints one line:
# what it ran and found. On failure the end of libFuzzer's log follows (the full log is
# <work>/<name>.log).
# Usage: run.sh <fuzz binary> <name> <seed dir> <work dir>
set -u
bin=$1 name=$2 seeds=$3 work=$4
secs=${PODTAP_FUZZ_SECONDS:-20}
mkdir -p "$work/corpus/$name" "$work/artifacts"
log=$work/$name.log
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/$name-" "$work/corpus/$name" "$seeds" >"$log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
units=$(find "$work/corpus/$name" -type f | wc -l)
crashes=$(find "$work/artifacts" -name "$name-*" -type f | wc -l)
echo "fuzz_$name: ${execs:-0} execs in $secs s, ${cov:-cov: ?} edges, $units corpus units, $crashes crash artifacts, exit $rc"
if [ "$rc" -ne 0 ]; then tail -n 60 "$log"; fi
exit "$rc"
