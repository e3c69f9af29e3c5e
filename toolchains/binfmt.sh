# Sourced by toolchains/cross-test.sh and toolchains/trixie.sh: running foreign-architecture
# programs under qemu user emulation. Defines functions only.

# gw_with_binfmt QEMU CMD...: runs CMD where the kernel starts the ELF files of QEMU's architecture
# (arm, aarch64) under qemu: as is where the machine registered it (binfmt_misc); otherwise, as
# root on Linux >= 6.7, in a private user and mount namespace with a binfmt_misc instance of its
# own holding /usr/lib/binfmt.d/qemu-QEMU.conf (flag F: the interpreter is opened at registration,
# so CMD may chroot elsewhere), so that nothing outside changes.
gw_with_binfmt() {
  local qemu=$1
  shift
  local binfmt_conf=/usr/lib/binfmt.d/qemu-$qemu.conf
  if [[ -r /proc/sys/fs/binfmt_misc/qemu-$qemu ]] && grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$qemu"; then
    "$@"
    return
  fi
  if [[ $(id -u) -eq 0 ]] && unshare --user --map-root-user --mount \
    sh -c 'mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc' 2>/dev/null; then
    # The namespace maps every uid and gid to itself (mosquitto drops to its own user), which
    # only root may write; the child waits on a fifo until the maps are in place.
    local fifo pid i
    fifo=$(mktemp -u /tmp/gw-cross.XXXXXX)
    mkfifo "$fifo"
    unshare --user --mount -- bash -c '
      read -r _ <"$0"
      mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
      grep -v "^#" "$1" >/proc/sys/fs/binfmt_misc/register
      shift
      exec "$@"' "$fifo" "$binfmt_conf" "$@" &
    pid=$!
    for ((i = 0; i < 100; i++)); do
      [[ $(readlink "/proc/$pid/ns/user") != $(readlink /proc/self/ns/user) ]] && break
      sleep 0.05
    done
    echo "0 0 4294967295" >"/proc/$pid/uid_map"
    echo "0 0 4294967295" >"/proc/$pid/gid_map"
    echo go >"$fifo"
    rm -f "$fifo"
    wait "$pid"
    return
  fi
  [[ ${GW_BINFMT_QUIET:-} ]] || echo "binfmt: no binfmt_misc registration for qemu-$qemu; tests that start its programs" \
    "themselves will fail (register it: apt-get install binfmt-support, or run as root)" >&2
  "$@"
}
