#!/usr/bin/env bash
# Debian 13 (trixie), the release Raspberry Pi OS is built on since late 2025, on this Debian 12
# machine: makes (or reuses) a trixie root with debootstrap in DIR/root, installs the project's
# packages there with the project's own toolchains/setup.sh, builds with warnings as errors and runs
# ctest, all inside the root (chroot). The source tree is bind-mounted read-only at /src; the
# build tree is DIR/root/build; caches (apt, the Maven repository with the real brokers, the Python
# venv) stay in the root between runs. Nothing outside DIR changes (the mounts last the run).
#
#   toolchains/trixie.sh [DIR] [--build-only | --armhf] [-- ctest args...]
#     DIR          default build-trixie in the source tree (ignored by git)
#     --build-only configure and build, no tests
#     --armhf      cross-build for 32-bit ARM (armhf) in a second root, DIR/root-armhf (trixie's
#                  armhf index resolves where bookworm's does not), with toolchains/cross-test.sh,
#                  and run the tests there under qemu-arm
#
# Needs root (debootstrap, chroot, mounts) and debootstrap (toolchains/setup.sh installs it).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=$src/build-trixie
mode=native
ctest_args=()
while (($#)); do
  case $1 in
    --build-only) mode=build-only ;;
    --armhf) mode=armhf ;;
    --) shift; ctest_args=("$@"); break ;;
    -*) echo "trixie.sh: unknown option $1" >&2; exit 2 ;;
    *) dir=$1 ;;
  esac
  shift
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
root=$dir/root
# A cross build's tests link the target's Catch2 3 library, which replaces the native one
# (setup.sh): the armhf tree has a root of its own.
[[ $mode == armhf ]] && root=$dir/root-armhf
[[ $(id -u) -eq 0 ]] || { echo "trixie.sh: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }

source "$src/toolchains/debian-root.sh"
gw_root_make trixie "$root"
gw_root_enter "$root" "$src"
in_root() { gw_in_root "$root" "$@"; }

start=$SECONDS
setup_args=""
[[ $mode == armhf ]] && setup_args=--armhf
in_root -- "/src/toolchains/setup.sh $setup_args" | tail -3
gw_root_update_cas "$root"
echo "trixie.sh: packages ready in $((SECONDS - start)) s" >&2

quoted_args=""
((${#ctest_args[@]})) && quoted_args=$(printf '%q ' "${ctest_args[@]}")
case $mode in
  armhf)
    # Built inside (cross-test.sh; `ctest -N` only lists). The tests run from here: a chrooted
    # process may not make the user namespace that holds a binfmt_misc instance of its own, so the
    # namespace comes first and the chroot inside it (toolchains/binfmt.sh).
    in_root -- "cd /src && GW_BINFMT_QUIET=1 ./toolchains/cross-test.sh --armhf /build-armhf -- -N >/dev/null"
    source "$src/toolchains/binfmt.sh"
    start=$SECONDS
    rc=0
    in_root gw_with_binfmt arm -- "cd /build-armhf && ctest --output-on-failure --timeout 600 -j \$(nproc) $quoted_args" || rc=$?
    echo "trixie.sh: armhf tests under qemu-arm took $((SECONDS - start)) s" >&2
    exit $rc
    ;;
  *)
    start=$SECONDS
    in_root -- "cd / && CI=true /src/toolchains/build.sh /build"
    echo "trixie.sh: built in $((SECONDS - start)) s ($(in_root -- 'g++ --version | head -1'))" >&2
    if [[ $mode == native ]]; then
      in_root -- "/src/toolchains/fetch-brokers.sh kafka pulsar >/dev/null && /src/toolchains/python-env.sh >/dev/null"
      in_root -- "cd /build && ctest --output-on-failure --timeout 600 -j \$(nproc) -LE '^sanitizer_only\$' $quoted_args"
    fi
    ;;
esac
