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
mirror=${GW_DEBIAN_MIRROR:-http://deb.debian.org/debian}
[[ $(id -u) -eq 0 ]] || { echo "trixie.sh: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }

if [[ ! -f $root/.gw-debootstrap-complete ]]; then
  command -v debootstrap >/dev/null || { echo "trixie.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  rm -rf "$root"
  echo "trixie.sh: debootstrap --variant=minbase trixie $root $mirror" >&2
  start=$SECONDS
  debootstrap --variant=minbase trixie "$root" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
    { tail -20 "$dir/debootstrap.log" >&2; exit 1; }
  # Security updates too, as on a real trixie system (Multi-Arch: same libraries must match).
  cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror trixie main
deb $mirror trixie-updates main
deb http://deb.debian.org/debian-security trixie-security main
EOF
  touch "$root/.gw-debootstrap-complete"
  echo "trixie.sh: root made in $((SECONDS - start)) s" >&2
fi

mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() {  # bind SOURCE TARGET [ro]
  mkdir -p "$2"
  mount --rbind "$1" "$2"
  mount --make-rslave "$2"
  mounts+=("$2")
  if [[ ${3:-} == ro ]]; then mount -o remount,bind,ro "$2"; fi
}
# The root is a mount point of its own, so that the mount table seen inside has an entry for "/"
# (Java's FileStore, which Pulsar's bookie asks, fails with "Mount point not found" otherwise).
bind "$root" "$root"
bind /dev "$root/dev"
bind /sys "$root/sys"
mkdir -p "$root/proc" "$root/src" "$root/dev/shm"
mount -t proc proc "$root/proc" && mounts+=("$root/proc")
bind "$src" "$root/src" ro
# The sensor data the tests and the demo read beside the checkout (../shared), where it is.
if [[ -d $src/../shared ]]; then bind "$(cd "$src/../shared" && pwd)" "$root/shared" ro; fi
cp -L /etc/resolv.conf "$root/etc/resolv.conf"

# in_root [WRAPPER...] -- COMMAND: COMMAND by bash in the root, with a clean environment (WRAPPER runs
# the chroot, e.g. gw_with_binfmt arm).
in_root() {
  local wrapper=()
  while [[ $1 != -- ]]; do wrapper+=("$1"); shift; done
  "${wrapper[@]}" chroot "$root" /usr/bin/env -i HOME=/root \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb CI="${CI:-}" \
    GW_TEST_TIME_SCALE="${GW_TEST_TIME_SCALE:-}" KEEP="${KEEP:-}" /bin/bash -c "$2"
}

# The machine's own trust anchors (a site CA in /usr/local/share/ca-certificates, e.g. of a proxy
# that inspects TLS) are the root's too, so that apt, pip and Maven reach what the machine reaches.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  if [[ -x $root/usr/sbin/update-ca-certificates ]]; then in_root -- "update-ca-certificates >/dev/null 2>&1" || true; fi
fi

start=$SECONDS
setup_args=""
[[ $mode == armhf ]] && setup_args=--armhf
in_root -- "/src/toolchains/setup.sh $setup_args" | tail -3
in_root -- "update-ca-certificates >/dev/null 2>&1" || true
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
    in_root gw_with_binfmt arm -- "cd /build-armhf && ctest --output-on-failure --timeout 600 $quoted_args" || rc=$?
    echo "trixie.sh: armhf tests under qemu-arm took $((SECONDS - start)) s" >&2
    exit $rc
    ;;
  *)
    start=$SECONDS
    in_root -- "cd / && CI=true /src/toolchains/build.sh /build"
    echo "trixie.sh: built in $((SECONDS - start)) s ($(in_root -- 'g++ --version | head -1'))" >&2
    if [[ $mode == native ]]; then
      in_root -- "/src/toolchains/fetch-brokers.sh kafka pulsar >/dev/null && /src/toolchains/python-env.sh >/dev/null"
      in_root -- "cd /build && ctest --output-on-failure --timeout 600 -LE '^sanitizer_only\$' $quoted_args"
    fi
    ;;
esac
