# Sourced by toolchains/trixie.sh and toolchains/packages.sh: a Debian root (debootstrap) in a folder
# of the build tree, entered with chroot. Defines functions only; needs root.

# gw_root_make RELEASE ROOT: makes ROOT with `debootstrap --variant=minbase RELEASE` unless an
# earlier run completed it (a marker file; a half-made root is made again). Its apt sources are
# the release, its updates and its security suite, as on a real system of that release.
# GW_DEBIAN_MIRROR overrides the mirror.
gw_root_make() {
  local release=$1 root=$2
  local mirror=${GW_DEBIAN_MIRROR:-http://deb.debian.org/debian} start=$SECONDS
  [[ -f $root/.gw-debootstrap-complete ]] && return 0
  command -v debootstrap >/dev/null || { echo "debian-root: debootstrap is missing (toolchains/setup.sh installs it)" >&2; return 1; }
  rm -rf "$root"
  mkdir -p "$(dirname "$root")"
  echo "debian-root: debootstrap --variant=minbase $release $root $mirror" >&2
  debootstrap --variant=minbase "$release" "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
    { tail -20 "$root.debootstrap.log" >&2; return 1; }
  cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $release main
deb $mirror $release-updates main
deb http://deb.debian.org/debian-security $release-security main
EOF
  touch "$root/.gw-debootstrap-complete"
  echo "debian-root: $release root made in $((SECONDS - start)) s" >&2
}

# gw_root_enter ROOT SRC: mounts what a build and its tests need in ROOT (itself, /dev, /sys, /proc,
# SRC read-only at /src, SRC/../shared read-only at /shared where it exists), and the machine's DNS
# and trust anchors. The mounts are undone at the shell's exit (trap EXIT; gw_root_leave).
gw_root_mounts=()
gw_root_leave() {
  local i
  for ((i = ${#gw_root_mounts[@]} - 1; i >= 0; i--)); do umount -l "${gw_root_mounts[i]}" 2>/dev/null || true; done
  gw_root_mounts=()
}
gw_root_bind() {  # gw_root_bind SOURCE TARGET [ro]
  mkdir -p "$2"
  mount --rbind "$1" "$2"
  mount --make-rslave "$2"
  gw_root_mounts+=("$2")
  if [[ ${3:-} == ro ]]; then mount -o remount,bind,ro "$2"; fi
}
gw_root_enter() {
  local root=$1 src=$2
  trap gw_root_leave EXIT
  # The root is a mount point of its own, so that the mount table seen inside has an entry for "/"
  # (Java's FileStore, which Pulsar's bookie asks, fails with "Mount point not found" otherwise).
  gw_root_bind "$root" "$root"
  gw_root_bind /dev "$root/dev"
  gw_root_bind /sys "$root/sys"
  mkdir -p "$root/proc" "$root/src" "$root/dev/shm"
  mount -t proc proc "$root/proc" && gw_root_mounts+=("$root/proc")
  gw_root_bind "$src" "$root/src" ro
  # The sensor data the tests and the demo read beside the checkout (../shared), where it is.
  if [[ -d $src/../shared ]]; then gw_root_bind "$(cd "$src/../shared" && pwd)" "$root/shared" ro; fi
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  # The machine's own trust anchors (a site CA in /usr/local/share/ca-certificates, e.g. of a proxy
  # that inspects TLS) are the root's too, so that apt, pip and Maven reach what the machine reaches.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    gw_root_update_cas "$root"
  fi
}
gw_root_update_cas() {
  if [[ -x $1/usr/sbin/update-ca-certificates ]]; then gw_in_root "$1" -- "update-ca-certificates >/dev/null 2>&1" || true; fi
}

# gw_in_root ROOT [WRAPPER...] -- COMMAND: COMMAND by bash in ROOT, with a clean environment (WRAPPER
# runs the chroot, e.g. gw_with_binfmt arm). CI, GW_TEST_TIME_SCALE and KEEP are passed on.
gw_in_root() {
  local root=$1 wrapper=()
  shift
  while [[ $1 != -- ]]; do wrapper+=("$1"); shift; done
  "${wrapper[@]}" chroot "$root" /usr/bin/env -i HOME=/root \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb CI="${CI:-}" \
    GW_TEST_TIME_SCALE="${GW_TEST_TIME_SCALE:-}" KEEP="${KEEP:-}" /bin/bash -c "$2"
}
