#!/usr/bin/env bash
# Cross-builds everything for an ARM target with Debian multiarch and runs the whole ctest suite
# (unit tests, and the end-to-end tests including tests/arm/smoke.sh) under qemu user emulation.
#   toolchains/cross-test.sh [--arm64|--armhf] [--smoke] [BUILD_DIR] [-- extra ctest args...]
# Defaults: --arm64, BUILD_DIR = ./build-arm64, Release (GW_BUILD_TYPE overrides). Installs what
# it needs first (toolchains/setup.sh --arm64). Under CI (CI=true) warnings are errors.
# --smoke: build only the programs tests/arm/smoke.sh runs and run only that test (ctest label arm):
#   CI's arm64 step; the unit tests run natively and under ASan there, and under qemu-arm in the
#   armhf tree (toolchains/trixie.sh --armhf), so the whole arm64 suite under qemu is on demand.
#
# ctest runs each test binary through CMAKE_CROSSCOMPILING_EMULATOR. Some tests also start the
# target's programs themselves (kafka-mock, firmware-sim, edge-gateway), which needs the kernel to
# hand foreign ELF files to qemu (binfmt_misc). If the machine has that registration (Debian does
# it when qemu-user-static and systemd are installed), ctest runs as is; otherwise, as root on
# Linux >= 6.7, the tests run in a private user+mount namespace with its own binfmt_misc instance,
# which changes nothing outside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
arch=arm64
if [[ ${1:-} == --arm64 || ${1:-} == --armhf ]]; then arch=${1#--}; shift; fi
smoke=
if [[ ${1:-} == --smoke ]]; then smoke=1; shift; fi
build=$root/build-$arch
if [[ $# -gt 0 && $1 != -- ]]; then build=$1; shift; fi
if [[ ${1:-} == -- ]]; then shift; fi
case $arch in
  arm64) toolchain=aarch64-linux-gnu.cmake qemu=aarch64 ;;
  armhf) toolchain=arm-linux-gnueabihf.cmake qemu=arm ;;
esac

"$root/toolchains/setup.sh" --"$arch"

args=(-G Ninja -DCMAKE_BUILD_TYPE="${GW_BUILD_TYPE:-Release}" --toolchain "$root/toolchains/$toolchain")
if [[ ${CI:-} == true ]]; then args+=(-DGW_WERROR=ON); fi
start=$SECONDS
cmake -S "$root" -B "$build" "${args[@]}" >/dev/null
targets=()
ctest_select=()
if [[ $smoke ]]; then
  targets=(--target edge-gateway kafka-mock uplink-cat firmware-sim)
  ctest_select=(-L '^arm$')
fi
cmake --build "$build" -j "$(nproc)" "${targets[@]}"
echo "cross-test: $arch build${smoke:+ of the smoke test programs} took $((SECONDS - start)) s"

source "$root/toolchains/binfmt.sh"

start=$SECONDS
rc=0
gw_with_binfmt "$qemu" ctest --test-dir "$build" --output-on-failure --timeout 600 "${ctest_select[@]}" "$@" || rc=$?
echo "cross-test: $arch tests under qemu took $((SECONDS - start)) s"
exit $rc
