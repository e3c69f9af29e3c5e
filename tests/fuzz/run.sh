#!/usr/bin/env bash
# Builds the libFuzzer targets (clang 16, ASan+UBSan, in build-fuzz/) and runs each for a bounded
# time through ctest (label fuzz), one after another.
#   tests/fuzz/run.sh                     each target 20 s (CI)
#   tests/fuzz/run.sh --long 3600         each target an hour
#   tests/fuzz/run.sh --long 600 -R http  one target (extra arguments go to ctest)
# A crash stops that target; the input and libFuzzer's report are in build-fuzz/tests/fuzz/work/.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=20
if [[ ${1:-} == --long ]]; then
  seconds=${2:?--long needs a number of seconds}
  shift 2
fi
build=${GW_FUZZ_BUILD:-$root/build-fuzz}
"$root/toolchains/setup.sh"
args=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-16 -DGW_FUZZ=ON
      -DGW_BUILD_TESTS=OFF -DGW_FUZZ_SECONDS="$seconds")
if [[ ${CI:-} == true ]]; then args+=(-DGW_WERROR=ON); fi
cmake -S "$root" -B "$build" "${args[@]}" >/dev/null
# Only the fuzz targets and the libraries they link (not the programs).
cmake --build "$build" -j 2 --target fuzz_telemetry fuzz_json fuzz_batch fuzz_config fuzz_http fuzz_mapping \
  $(grep -q "GW_SPARKPLUG:BOOL=ON" "$build/CMakeCache.txt" && echo fuzz_sparkplug)
cd "$build"
ctest -L fuzz --output-on-failure "$@"
