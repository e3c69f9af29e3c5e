#!/usr/bin/env bash
# Makes the Python venv the tests' independent verifiers run in (toolchains/python/requirements.txt,
# pinned, from PyPI) and prints its python. python3 on this machine is not Debian's, and Debian's
# python3-* packages would be invisible to it anyway: everything comes from the requirements.
#
#   toolchains/python-env.sh            prints e.g. ~/.cache/edge-gateway/venv-1a2b3c4d5e6f/bin/python
#
# The venv is ${GW_VENV_CACHE:-${XDG_CACHE_HOME:-~/.cache}/edge-gateway}/venv-<requirements digest>:
# a changed requirements file gets a new venv, an unchanged one is not installed again (idempotent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
req=$here/python/requirements.txt
cache=${GW_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-gateway}
dir=$cache/venv-$( (sha256sum <"$req"; python3 --version) | sha256sum | cut -c1-12)
if [[ ! -f $dir/complete ]]; then
  rm -rf "$dir"
  mkdir -p "$cache"
  echo "python-env: making $dir ($req)" >&2
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
  touch "$dir/complete"
fi
echo "$dir/bin/python"
