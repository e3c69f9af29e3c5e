#!/usr/bin/env bash
# Builds the Debian packages of edge-gateway for every release and architecture users run:
# Debian 12 (bookworm) and 13 (trixie; Raspberry Pi OS is built on each), amd64, arm64 and armhf.
#
#   toolchains/packages.sh [--out DIR] [TARGET...]
#     TARGET   RELEASE-ARCH: bookworm-amd64 bookworm-arm64 bookworm-armhf trixie-amd64 trixie-arm64
#              trixie-armhf (default: all six)
#     --out    where the .deb files go (default build-deb/out): edge-gateway_0.1.0-1~deb12_armhf.deb, ...
#
# Each package is built on a system of its release, so that dpkg-shlibdeps names the libraries as
# that release does (trixie's 64-bit time_t renames: libssl3t64, ...) and the systemd files go
# where that release keeps them (toolchains/packaging.cmake): bookworm amd64 and arm64 on this
# machine (Debian 12; arm64 with multiarch, toolchains/setup.sh --arm64), the others in a Debian
# root made with debootstrap in build-deb/roots/RELEASE-ARCH (toolchains/debian-root.sh; kept for
# the next run), one per architecture because a multiarch system holds one cross architecture's
# -dev libraries at a time. Bookworm armhf is built in a root too: the mirror's bookworm-security
# armhf index failed here for weeks (it resolved again on 2026-12-07), and a root keeps such a
# failure away from the machine's own apt. Release builds (Release, warnings as errors), product only (GW_BUILD_TESTS=OFF), then
# `cpack -G DEB`. The native packages are installed and run by ctest's package.install (the
# bookworm one here, the trixie one in toolchains/trixie.sh's root). Needs root (apt, chroot).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$src/build-deb
out=$work/out
targets=()
while (($#)); do
  case $1 in
    --out) out=$2; shift ;;
    bookworm-amd64 | bookworm-arm64 | bookworm-armhf | trixie-amd64 | trixie-arm64 | trixie-armhf) targets+=("$1") ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "packages.sh: unknown target or option $1" >&2; exit 2 ;;
  esac
  shift
done
((${#targets[@]})) || targets=(bookworm-amd64 bookworm-arm64 bookworm-armhf trixie-amd64 trixie-arm64 trixie-armhf)
[[ $(id -u) -eq 0 ]] || { echo "packages.sh: needs root (apt, debootstrap, chroot)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
host_release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")

# cmake_args ARCH: the configure options of a product-only release build for ARCH.
cmake_args() {
  local args="-G Ninja -DCMAKE_BUILD_TYPE=Release -DGW_BUILD_TESTS=OFF -DGW_WERROR=ON"
  case $1 in
    arm64) args+=' --toolchain "$src/toolchains/aarch64-linux-gnu.cmake"' ;;
    armhf) args+=' --toolchain "$src/toolchains/arm-linux-gnueabihf.cmake"' ;;
  esac
  echo "$args"
}
# The build, run by bash on this machine or in a root with src, build and deb set: configure, build,
# package into deb (emptied first).
build_script() {
  cat <<EOF
set -euo pipefail
cmake -S "\$src" -B "\$build" $(cmake_args "$1") >/dev/null
cmake --build "\$build" -j "\$(nproc)" | tail -1
rm -rf "\$deb" && mkdir -p "\$deb"
(cd "\$build" && cpack -G DEB -B "\$deb" >"\$build/cpack.log") || { cat "\$build/cpack.log"; exit 1; }
EOF
}

source "$src/toolchains/debian-root.sh"
summary=()
for target in "${targets[@]}"; do
  release=${target%-*} arch=${target#*-}
  start=$SECONDS
  setup_args=(--build-only)
  [[ $arch != amd64 ]] && setup_args+=(--"$arch")
  echo "packages.sh: $target" >&2
  if [[ $release == "$host_release" && $target != bookworm-armhf ]]; then
    "$src/toolchains/setup.sh" "${setup_args[@]}" | tail -1
    src=$src build=$work/$target deb=$work/$target/deb bash -c "$(build_script "$arch")"
    debs=("$work/$target"/deb/edge-gateway_*.deb)
  else
    root=$work/roots/$target
    gw_root_make "$release" "$root"
    (
      gw_root_enter "$root" "$src"
      gw_in_root "$root" -- "set -o pipefail; /src/toolchains/setup.sh ${setup_args[*]} | tail -1"
      gw_root_update_cas "$root"
      gw_in_root "$root" -- "src=/src build=/deb-build deb=/deb-out; $(build_script "$arch")"
    )
    debs=("$root"/deb-out/edge-gateway_*.deb)
  fi
  ((${#debs[@]} == 1)) && [[ -f ${debs[0]} ]] || { echo "packages.sh: $target made no single .deb: ${debs[*]}" >&2; exit 1; }
  got=$(dpkg-deb -f "${debs[0]}" Architecture)
  [[ $got == "$arch" ]] || { echo "packages.sh: $target: the package says Architecture $got" >&2; exit 1; }
  cp "${debs[0]}" "$out/"
  summary+=("$(basename "${debs[0]}") $(stat -c %s "${debs[0]}") B, $((SECONDS - start)) s; Depends: $(dpkg-deb -f "${debs[0]}" Depends)")
done
printf 'packages.sh: %s\n' "${summary[@]}"
echo "packages.sh: ${#summary[@]} package(s) in $out"
