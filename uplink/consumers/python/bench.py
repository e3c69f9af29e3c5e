"""Decode rate of the Python reader over the valid shared vectors, in records/s:

    python bench.py VECTORS_DIR [SECONDS]      prints `BENCH decode_python N records/s`
"""
import sys
import time

import gwbatch
from tests.conftest import load_vectors  # noqa: E402  (same folder layout in the source tree)


def main():
    import os

    os.environ.setdefault("GW_BATCH_VECTORS", sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    vectors = [(spec, value) for _, spec, value in load_vectors() if "expect" in spec]
    records = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for spec, value in vectors:
            b = gwbatch.decode_batch(value)
            records += len(b.records) + len(b.aggregates)
    print(f"BENCH decode_python {records / (time.perf_counter() - start):.0f} records/s")


if __name__ == "__main__":
    main()
