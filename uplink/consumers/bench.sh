#!/usr/bin/env bash
# Decode rate of the three readers of the upstream batches on the shared vectors (the valid ones,
# 1,030 records in all, 1,000 of them in the largest batch), in the same run: the C++
# decode_batch (batch-vectors bench), the Python package and the Java decoder (after a warm-up of the
# JIT). Prints `BENCH decode_<reader> N records/s` and `RATIO decode_<reader>_vs_cpp R`.
# Not a ctest: run on demand after a build and `ctest -L consumers` (which builds the Python and
# Java readers into the build tree).
#   uplink/consumers/bench.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd) seconds=${2:-3}
vectors=$build/batch-vectors
"$build/uplink/consumers/batch-vectors" write "$vectors" >/dev/null
py=$("$src/toolchains/python-env.sh")
[[ -d $build/consumers/python/site/gwbatch && -f $build/consumers/java/classpath.txt ]] ||
  { echo "bench: build the readers first (cd $build && ctest -L consumers)" >&2; exit 1; }
cpp=$("$build/uplink/consumers/batch-vectors" bench "$vectors" "$seconds")
python=$(cd "$build/consumers/python/src" && PYTHONPATH=$build/consumers/python/site "$py" bench.py "$vectors" "$seconds")
java=$(java -cp "$build/consumers/java/target/classes:$(<"$build/consumers/java/classpath.txt")" \
  dev.edgegateway.batch.example.DecodeBench "$vectors" "$seconds")
printf '%s\n%s\n%s\n' "$cpp" "$python" "$java"
rate() { awk '{ print $3 }' <<<"$1"; }
awk -v c="$(rate "$cpp")" -v p="$(rate "$python")" -v j="$(rate "$java")" \
  'BEGIN { printf "RATIO decode_python_vs_cpp %.4g\nRATIO decode_java_vs_cpp %.4g\n", p / c, j / c }'
