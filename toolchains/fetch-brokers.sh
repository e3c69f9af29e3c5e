#!/usr/bin/env bash
# Fetches the real message brokers the tests run, at the versions pinned by the poms under
# toolchains/brokers/<broker>/pom.xml, from Maven Central into a cache folder, and prints each
# broker's class-path folder (one line per broker asked for):
#
#   toolchains/fetch-brokers.sh [kafka|pulsar ...]  (default: kafka)
#
# The cache is ${GW_BROKERS_CACHE:-${XDG_CACHE_HOME:-~/.cache}/edge-gateway/brokers}/<broker>-<pom
# digest>/lib: a changed pom gets a new folder, an unchanged one is not resolved again (idempotent;
# Maven's own ~/.m2 keeps the downloads too). Needs Java and Maven (toolchains/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${GW_BROKERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-gateway/brokers}
command -v mvn >/dev/null || { echo "fetch-brokers: Maven is missing (toolchains/setup.sh installs it)" >&2; exit 1; }
brokers=("$@")
((${#brokers[@]})) || brokers=(kafka)
for broker in "${brokers[@]}"; do
  pom=$here/brokers/$broker/pom.xml
  [[ -f $pom ]] || { echo "fetch-brokers: no pom for '$broker' ($pom)" >&2; exit 2; }
  dir=$cache/$broker-$(sha256sum "$pom" | cut -c1-12)
  if [[ ! -f $dir/complete ]]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    echo "fetch-brokers: resolving $broker ($pom) into $dir" >&2
    mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/lib" >&2
    touch "$dir/complete"
  fi
  echo "$dir/lib"
done
