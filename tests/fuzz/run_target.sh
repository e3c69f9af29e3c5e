#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time on a fresh copy of its seed corpus (the repository's
# corpus is never written), with its dictionary if it has one. Exit status: libFuzzer's (non-zero:
# a crash, leak, time-out or broken invariant; the input is saved under WORK/<name>/).
#   run_target.sh FUZZER NAME WORK_DIR SECONDS [extra libFuzzer flags...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fuzzer=$1 name=$2 work=$3 seconds=$4
shift 4
dir=$work/$name
rm -rf "$dir"
mkdir -p "$dir/corpus"
cp "$here/corpus/$name"/* "$dir/corpus/"
args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
      -print_final_stats=1 -artifact_prefix="$dir/")
if [[ -f $here/$name.dict ]]; then args+=(-dict="$here/$name.dict"); fi
echo "run_target.sh: $fuzzer ${args[*]} $* $dir/corpus"
exec "$fuzzer" "${args[@]}" "$@" "$dir/corpus"
