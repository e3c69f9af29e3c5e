#!/usr/bin/env bash
# Sets everything up (Debian packages, the real brokers the tests run), builds, and runs the whole
# test suite through ctest.
#   tests/run.sh [extra ctest args...]       e.g. tests/run.sh -L buffer
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/toolchains/setup.sh"
# The real Apache Kafka the e2e.kafka_real_* tests run (Maven Central, pinned; cached).
"$root/toolchains/fetch-brokers.sh" kafka >/dev/null
# The venv of the independent verifiers (PyPI, pinned: toolchains/python/requirements.txt).
"$root/toolchains/python-env.sh" >/dev/null
"$root/toolchains/build.sh" "$root/build"
cd "$root/build"
ctest --output-on-failure --timeout 600 "$@"
