#!/usr/bin/env bash
# Builds the project under the sanitizers and runs the tests there (CI step 3, see .ci/run).
#   toolchains/sanitize.sh address [BUILD_DIR] [-- extra ctest args...]   ASan + LSan + UBSan
#   toolchains/sanitize.sh thread  [BUILD_DIR] [-- extra ctest args...]   TSan
# BUILD_DIR defaults to build-asan / build-tsan next to the sources.
#
# address: a Debug build at -O1 -g1 (asserts on, 2-3x slower than Release rather than 10x at -O0)
#   of every target but the benchmarks, then the whole ctest suite: all Catch2 labels and every
#   e2e test (not package.install, which would package and install the sanitizer build here).
# thread: only the test binaries of the modules with threads of their own (buffer: group commit and
#   concurrent readers; ingest: the IPC hub and its workers, the MQTT source; uplink: the sinks'
#   threads; windowing: the stage; gateway: the HTTP server) and the programs they run; the e2e
#   scripts are left out (they run the same code, and TSan's 5-15x would need their timeouts
#   scaled far beyond what they test).
#
# Every report fails the run, also one from a child process whose exit status a test does not see
# (the e2e scripts stop the gateway with SIGTERM and LeakSanitizer reports at its exit): each
# sanitizer writes to LOG_DIR/<tool>.<pid>, and any such file after ctest is printed and fails the
# run. UBSan is fatal (-fno-sanitize-recover=all, halt_on_error). Timeouts: GW_TEST_TIME_SCALE
# (default 3 under ASan, 5 under TSan) multiplies the ctest TIMEOUT of every test and the bounded
# waits of the e2e scripts (tests/e2e/lib.sh gw_scaled); no assertion is weakened.
# Suppressions (toolchains/sanitizers/*.supp) name third-party libraries only, never our code.
set -euo pipefail

# All in one function, read whole before it runs: editing this file during a run cannot change it.
main() {
  root=$(cd "$(dirname "$0")/.." && pwd)
  mode=${1:-}
  case $mode in
    address | thread) shift ;;
    *) echo "usage: $0 address|thread [BUILD_DIR] [-- ctest args...]" >&2; exit 2 ;;
  esac
  build=$root/build-$([[ $mode == address ]] && echo asan || echo tsan)
  if [[ $# -gt 0 && $1 != -- ]]; then build=$1; shift; fi
  if [[ ${1:-} == -- ]]; then shift; fi
  ctest_args=("$@")

  if [[ $mode == address ]]; then
    scale=${GW_TEST_TIME_SCALE:-3}
    # Every test binary and every program the tests run; not the benchmarks (bench-*).
    targets=(test_buffer test_ingest test_windowing test_uplink test_gateway test_firmware_sim
             edge-gateway firmware-sim kafka-mock uplink-cat pulsar-ws-server batch-vectors)
  else
    scale=${GW_TEST_TIME_SCALE:-5}
    # With their dependencies (add_dependencies): buffer_crash_child, ingest_park_helper, kafka-mock,
    # uplink-cat, windowing_kill_child.
    targets=(test_buffer test_ingest test_uplink test_windowing test_gateway)
  fi

  args=(-G Ninja -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" -DGW_SANITIZE="$mode"
        -DGW_TEST_TIME_SCALE="$scale")
  if [[ ${CI:-} == true ]]; then args+=(-DGW_WERROR=ON); fi
  # GW_SANITIZE_TARGETS="a b": build only these (e.g. to run one label's tests sooner).
  if [[ -n ${GW_SANITIZE_TARGETS:-} ]]; then read -ra targets <<<"$GW_SANITIZE_TARGETS"; fi
  start=$SECONDS
  cmake -S "$root" -B "$build" "${args[@]}" >/dev/null
  cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
  echo "sanitize.sh: $mode build took $((SECONDS - start)) s"

  logs=$build/sanitizer-logs
  rm -rf "$logs"
  mkdir -p "$logs"
  supp=$root/toolchains/sanitizers
  export GW_TEST_TIME_SCALE=$scale
  if [[ $mode == address ]]; then
    export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=0:log_path=$logs/asan"
    export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
    # package.install packages and installs this build: a sanitizer build is no product to ship.
    # Kill loops (of the gateway, the broker, the chaos run) and traced runs: once, natively (label
    # native_only).
    label_args=(-LE '^(package|native_only)$')
  else
    export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:history_size=4:suppressions=$supp/tsan.supp:log_path=$logs/tsan"
    # Single-threaded checks (the CLI round trip, the batch vectors, the config reference) and the
    # native_only tests (kill loops, the Python and Java readers) are left out here.
    label_args=(-L '^(buffer|ingest|uplink|windowing|gateway)$' -LE '^native_only$'
                -E '^(uplink\.decode_cli|uplink\.vectors_(write|cpp)|gateway\.readme_config_reference)$')
  fi

  start=$SECONDS
  rc=0
  # The Catch2 test cases two at a time, the scripts alone (gw_tests_run_alone in CMakeLists.txt).
  (cd "$build" && ctest --output-on-failure --timeout $((600 * scale)) -j "$(nproc)" "${label_args[@]}" "${ctest_args[@]}") || rc=$?
  echo "sanitize.sh: $mode tests took $((SECONDS - start)) s"

  reports=("$logs"/*)
  if [[ -e ${reports[0]} ]]; then
    for f in "${reports[@]}"; do
      echo "==== $f"
      cat "$f"
    done
    echo "sanitize.sh: FAIL: ${#reports[@]} $mode sanitizer report(s) (above)" >&2
    exit 1
  fi
  if ((rc != 0)); then
    echo "sanitize.sh: FAIL: ctest failed under $mode" >&2
    exit "$rc"
  fi
  echo "sanitize.sh: $mode: no sanitizer reports"
}

main "$@"
