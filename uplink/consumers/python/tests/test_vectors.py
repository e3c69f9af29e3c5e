"""Every shared vector, decoded by the Python reader and compared with its expected JSON field by
field (the C++ and Java suites compare the same files)."""
import json
import struct

import pytest

import gwbatch
from gwbatch import decode as decode_module
from conftest import load_vectors

VECTORS = load_vectors()


def bits(v: float) -> str:
    return "0x%016x" % struct.unpack("<Q", struct.pack("<d", v))[0]


def as_json(batch: gwbatch.Batch) -> dict:
    """The batch in the vectors' JSON form (doubles as their bit patterns)."""
    records = [{"seq": r.seq, "device": r.device, "device_seq": r.device_seq, "time_ms": r.time_ms,
                "boot_id": r.boot_id, "tags": [[k, v] for k, v in r.tags.items()],
                "metrics": [[k, bits(v)] for k, v in r.metrics.items()]} for r in batch.records]
    aggregates = []
    for a in batch.aggregates:
        d = dict(a.__dict__)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = bits(v)
        aggregates.append(d)
    return {"format_version": batch.format_version, "gateway_id": batch.gateway_id, "first_seq": batch.first_seq,
            "last_seq": batch.last_seq, "record_type": batch.record_type, "records": records,
            "aggregates": aggregates}


def outcome(value: bytes, headers) -> dict:
    try:
        return as_json(gwbatch.decode_batch(value, headers))
    except gwbatch.BatchError as e:
        assert e.kind in gwbatch.ERROR_KINDS
        return {"error": e.kind}


def first_difference(want, got, path):
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{path}: expected an object, got {got!r}"
        for k in want:
            if k not in got:
                return f"{path}.{k}: missing"
            d = first_difference(want[k], got[k], f"{path}.{k}")
            if d:
                return d
        extra = set(got) - set(want)
        return f"{path}: not expected {sorted(extra)}" if extra else None
    if isinstance(want, list):
        if not isinstance(got, list) or len(want) != len(got):
            return f"{path}: expected {len(want)} entries, got {len(got) if isinstance(got, list) else got!r}"
        for i, (w, g) in enumerate(zip(want, got)):
            d = first_difference(w, g, f"{path}[{i}]")
            if d:
                return d
        return None
    if type(want) is not type(got) or want != got:
        return f"{path}: expected {want!r}, got {got!r}"
    return None


@pytest.mark.parametrize("name,spec,value", VECTORS, ids=[v[0] for v in VECTORS])
@pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "no-numpy"])
def test_vector(name, spec, value, numpy, monkeypatch):
    if numpy and not decode_module._HAVE_NUMPY:
        pytest.skip("numpy is not installed")
    monkeypatch.setattr(decode_module, "_HAVE_NUMPY", numpy)
    want = {"error": spec["error"]} if "error" in spec else spec["expect"]
    got = outcome(value, [(k, v.encode()) for k, v in spec["headers"]])
    assert first_difference(want, got, name) is None, json.dumps(got)[:2000]


def test_vectors_cover_what_the_format_has():
    names = [v[0] for v in VECTORS]
    assert any(n.startswith("v1_") for n in names) and any(n.startswith("v2_aggregate") for n in names)
    assert sum(1 for n in names if n.startswith("bad_")) >= 10
