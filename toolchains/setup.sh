#!/usr/bin/env bash
# Installs, with apt-get, every Debian package that building, testing and running the demo of
# edge-gateway need, on Debian 12 (bookworm) or 13 (trixie; the names that differ are chosen below). Non-interactive and idempotent: packages already present are left alone, and
# `apt-get update` runs only when something is missing. Run as root (or through sudo).
#
#   toolchains/setup.sh            native build, tests, demo
#   toolchains/setup.sh --arm64    also the arm64 cross toolchain, the :arm64 libraries and qemu
#   toolchains/setup.sh --armhf    also the armhf cross toolchain, the :armhf libraries and qemu
#   toolchains/setup.sh --build-only   only what building the product and its .deb needs (with
#                                  --arm64/--armhf: for that architecture), no tests or demo
#
# Cross builds use Debian multiarch (no hand-made sysroot): `dpkg --add-architecture ARCH`, the
# crossbuild-essential-ARCH compilers, pkgconf:ARCH for the cross pkg-config wrapper
# (/usr/bin/<triplet>-pkg-config) and the :ARCH -dev package of every library. Installing :ARCH
# libraries may upgrade a few amd64 packages to the same version (Multi-Arch: same requires it).
# Header-only packages marked Multi-Arch: foreign (Catch2, CLI11, nlohmann-json) serve every
# architecture from their amd64 install; Debian's Catch2 main library is amd64-only, which is why
# the project compiles its own (tests/catch_main.cc).
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkgconf git ca-certificates
  # packages (CPack's DEB generator: dpkg-shlibdeps for the dependencies, file to find the ELF files)
  dpkg-dev file
  # libraries (PahoMqttCpp's CMake config needs libssl-dev although it does not declare it)
  libpaho-mqttpp-dev libpaho-mqtt-dev libssl-dev
  liblmdb-dev libzstd-dev libflatbuffers-dev flatbuffers-compiler
  libboost-dev librdkafka-dev
  libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  # mapped sources' JSON payloads (ingest/mapping.cc; header-only, Multi-Arch: foreign)
  rapidjson-dev
  # Sparkplug B payloads (ingest/sparkplug.proto): the runtime library and the host's protoc
  libprotobuf-dev protobuf-compiler
  # the mosquitto plugin (ingest mode "plugin"): the broker's plugin API v5 headers
  mosquitto-dev libmosquitto-dev
)
# Tests, demo and the other builds (--build-only leaves these out: enough to build the product and
# its packages, as toolchains/packages.sh does in its Debian roots).
test_packages=(
  catch2
  # tests and demo: a real broker, a real Kafka client, the format tools; python3-venv for the
  # venv of the tests' Python clients (toolchains/python-env.sh)
  mosquitto mosquitto-clients kcat zstd lmdb-utils curl jq procps python3 python3-venv
  # e2e.plugin_order traces mosquitto and the gateway
  strace
  # Debian roots of other releases (toolchains/trixie.sh, toolchains/packages.sh) and running
  # their foreign-architecture tests (qemu's binfmt_misc entries, from the machine's qemu)
  debootstrap qemu-user-static
  # the real brokers the tests run (Apache Kafka and Pulsar; toolchains/fetch-brokers.sh resolves
  # them from Maven Central with Maven) and the Java batch reader (uplink/consumers/java: compiled,
  # so the JDK)
  default-jdk-headless maven
  # the disk-full test: an ext4 image on a loop device (mkfs.ext4; mount and losetup from mount)
  e2fsprogs mount
  # HTTP tests and benchmark: promtool (checks /metrics), headless Chromium (the status page), wrk
  prometheus chromium chromium-driver wrk
  # fuzzing (tests/fuzz): clang and its libFuzzer/sanitizer runtimes (below: the release's)
)

# What differs between the releases. Debian 12: clang 16 (its default clang 14 cannot compile
# libstdc++ 12's std::expected; see GW_FUZZ in CMakeLists.txt). Debian 13: clang 19 (16 is gone).
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
case $codename in
  bookworm) test_packages+=(clang-16 libclang-rt-16-dev) ;;
  trixie) test_packages+=(clang-19 libclang-rt-19-dev) ;;
  *) echo "setup.sh: Debian '$codename' is not one this project knows (bookworm, trixie); trying bookworm's names" >&2
     test_packages+=(clang-16 libclang-rt-16-dev) ;;
esac

# The architecture-dependent libraries: a cross build needs the :ARCH package of each of them.
cross_libs=(
  libpaho-mqttpp-dev libpaho-mqtt-dev libssl-dev liblmdb-dev libzstd-dev libflatbuffers-dev
  libboost-dev librdkafka-dev libtomlplusplus-dev libspdlog-dev libfmt-dev libprotobuf-dev
)

arches=()
build_only=
for arg in "$@"; do
  case $arg in
    --arm64) arches+=(arm64) ;;
    --armhf) arches+=(armhf) ;;
    --build-only) build_only=1 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (use --arm64, --armhf, --build-only)" >&2; exit 2 ;;
  esac
done
[[ $build_only ]] || packages+=("${test_packages[@]}")

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

for arch in "${arches[@]}"; do
  packages+=(crossbuild-essential-"$arch" pkgconf:"$arch" qemu-user-static)
  for lib in "${cross_libs[@]}"; do packages+=("$lib:$arch"); done
done
# Debian 13's Catch2 3 is a compiled library (libcatch2-dev, /usr/lib/libCatch2.a, not Multi-Arch):
# a cross build's tests need the target's, which replaces the build machine's. So a trixie system
# set up for one cross architecture builds that architecture's tests, not native ones (trixie.sh
# keeps a root of its own for it).
if [[ $codename == trixie ]] && ((${#arches[@]})); then
  ((${#arches[@]} == 1)) || { echo "setup.sh: on trixie, one cross architecture at a time (Catch2 3)" >&2; exit 2; }
  for i in "${!packages[@]}"; do [[ ${packages[i]} == catch2 ]] && packages[i]=libcatch2-dev:${arches[0]}; done
  # Nor the native -dev libraries: some cannot sit beside the target's (libsasl2-dev, which
  # librdkafka-dev needs, is not Multi-Arch there), and only the target's are built against.
  for lib in "${cross_libs[@]}"; do
    for i in "${!packages[@]}"; do [[ ${packages[i]} == "$lib" ]] && unset 'packages[i]'; done
  done
  packages=("${packages[@]}")
fi

added=()
for arch in "${arches[@]}"; do
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    echo "setup.sh: dpkg --add-architecture $arch"
    "${sudo_cmd[@]}" dpkg --add-architecture "$arch"
    added+=("$arch")
  fi
done

# If the install fails, an architecture this run added is removed again: a foreign architecture
# whose index is broken on the mirror makes apt ignore the whole suite's fresh index (for every
# architecture), so leaving it would break later installs for everybody.
undo_arches() {
  local arch
  for arch in "${added[@]}"; do
    if [[ -z $(dpkg-query -W -f='${Package}\n' "*:$arch" 2>/dev/null) ]]; then
      echo "setup.sh: dpkg --remove-architecture $arch (its packages did not install)" >&2
      "${sudo_cmd[@]}" dpkg --remove-architecture "$arch"
    fi
  done
  "${sudo_cmd[@]}" apt-get update -qq || true
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} || ${#added[@]})); then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A mirror caught mid-sync fails one index ("File has unexpected size"): apt-get update then exits
  # non-zero but keeps every other index, so go on and let apt-get install say what it cannot do.
  if ! "${sudo_cmd[@]}" apt-get update -qq; then
    echo "setup.sh: apt-get update reported errors (above); trying the install anyway" >&2
  fi
  if ! "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    echo "setup.sh: apt-get install failed (above)" >&2
    undo_arches
    exit 1
  fi
fi

# The Debian mosquitto package starts a system broker on port 1883; the project never uses it
# (tests and the demo start their own on free loopback ports), so it is left as the system has it.
# Likewise the prometheus package's server (port 9090 where systemd runs): only promtool is used.
echo "setup.sh: all packages present${arches[*]:+ (with ${arches[*]})}"
