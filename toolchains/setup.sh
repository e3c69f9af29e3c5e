#!/usr/bin/env bash
# Installs, with apt-get, every Debian 12 package that building, testing and running the demo of
# edge-gateway need. Non-interactive and idempotent: packages already present are left alone, and
# `apt-get update` runs only when something is missing. Run as root (or through sudo).
#
#   toolchains/setup.sh            native build, tests, demo
#   toolchains/setup.sh --arm64    also the arm64 cross toolchain and :arm64 libraries (see [arm])
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkgconf git
  # libraries (PahoMqttCpp's CMake config needs libssl-dev although it does not declare it)
  libpaho-mqttpp-dev libpaho-mqtt-dev libssl-dev
  liblmdb-dev libzstd-dev libflatbuffers-dev flatbuffers-compiler
  libboost-dev librdkafka-dev
  libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  catch2
  # tests and demo: a real broker, a real Kafka client, the format tools
  mosquitto mosquitto-clients kcat zstd lmdb-utils curl jq procps
)

if [[ ${1:-} == --arm64 ]]; then
  echo "setup.sh: --arm64 is not available yet (see the [arm] issue)" >&2
  exit 2
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian mosquitto package starts a system broker on port 1883; the project never uses it
# (tests and the demo start their own on free loopback ports), so it is left as the system has it.
echo "setup.sh: all packages present"
