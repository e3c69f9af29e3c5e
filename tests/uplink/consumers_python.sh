#!/usr/bin/env bash
# The Python reader (uplink/consumers/python): installed with pip from a copy of its source tree (so
# that the build leaves nothing in the checkout; flatc generates its FlatBuffers code then), into a
# folder of the build tree, and its pytest suite run on the shared vectors that uplink.vectors_write
# wrote. The venv is the tests' (toolchains/python-env.sh: pytest, pandas, pinned).
#   tests/uplink/consumers_python.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
py=$("$src/toolchains/python-env.sh")
work=$build/consumers/python
rm -rf "$work"
mkdir -p "$work/src"
tar -C "$src/uplink/consumers/python" --exclude=build --exclude='*.egg-info' --exclude=__pycache__ -cf - . |
  tar -C "$work/src" -xf -
GW_BATCH_SCHEMA=$src/uplink/batch.fbs "$py" -m pip install -q --disable-pip-version-check --no-deps \
  --no-build-isolation --target "$work/site" "$work/src"
cd "$work/src"
GW_BATCH_VECTORS=$build/batch-vectors PYTHONPATH=$work/site "$py" -m pytest -q -p no:cacheprovider tests
