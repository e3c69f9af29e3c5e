#!/usr/bin/env bash
# Sets everything up (Debian packages), builds, and runs the whole test suite through ctest.
#   tests/run.sh [extra ctest args...]       e.g. tests/run.sh -L buffer
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/toolchains/setup.sh"
"$root/toolchains/build.sh" "$root/build"
cd "$root/build"
ctest --output-on-failure --timeout 600 "$@"
