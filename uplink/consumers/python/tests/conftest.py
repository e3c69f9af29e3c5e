"""The shared vectors (uplink/consumers/README.md): GW_BATCH_VECTORS names the folder that
`batch-vectors write` filled (ctest sets it)."""
import json
import os
import pathlib

import pytest


def vectors_dir() -> pathlib.Path:
    d = os.environ.get("GW_BATCH_VECTORS")
    if not d:
        raise pytest.UsageError("set GW_BATCH_VECTORS to a folder written by `batch-vectors write DIR`")
    return pathlib.Path(d)


def load_vectors():
    d = vectors_dir()
    out = []
    for name in json.loads((d / "index.json").read_text()):
        spec = json.loads((d / f"{name}.json").read_text())
        out.append((name, spec, (d / spec["value"]).read_bytes()))
    return out
