#!/usr/bin/env bash
# Configures and builds the project with CMake + Ninja.
#   toolchains/build.sh [BUILD_DIR] [extra cmake -D options...]
# BUILD_DIR defaults to ./build (Release). Under CI (CI=true) warnings are errors.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
args=(-G Ninja -DCMAKE_BUILD_TYPE="${GW_BUILD_TYPE:-Release}")
if [[ ${CI:-} == true ]]; then args+=(-DGW_WERROR=ON); fi
cmake -S "$root" -B "$build" "${args[@]}" "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
