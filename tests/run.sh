#!/usr/bin/env bash
# Sets everything up (Debian packages, the real brokers the tests run), builds, and runs the whole
# test suite through ctest.
#   tests/run.sh [extra ctest args...]       e.g. tests/run.sh -L buffer
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/toolchains/setup.sh"
# The real Apache Kafka and Apache Pulsar the e2e tests run (Maven Central, pinned; cached).
"$root/toolchains/fetch-brokers.sh" kafka pulsar >/dev/null
# The venv of the independent verifiers (PyPI, pinned: toolchains/python/requirements.txt).
"$root/toolchains/python-env.sh" >/dev/null
"$root/toolchains/build.sh" "$root/build"
cd "$root/build"
# Label sanitizer_only: kafka-mock twins of tests that run here against a real Kafka; they run in
# the sanitizer builds only (toolchains/sanitize.sh), where no JVM broker does. The Catch2 test
# cases run two at a time (-j); the scripts run alone (gw_tests_run_alone in CMakeLists.txt).
ctest --output-on-failure --timeout 600 -j "$(nproc)" -LE '^sanitizer_only$' "$@"
