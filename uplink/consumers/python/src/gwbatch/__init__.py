"""edge-gateway-batch: reads the upstream batches of the edge gateway (uplink/FORMAT.md).

    from gwbatch import decode_batch
    batch = decode_batch(msg.value(), msg.headers())
    for r in batch.records:
        print(batch.gateway_id, r.seq, r.device, r.time_ms, r.metrics)

`python -m gwbatch --bootstrap HOST:PORT --topic telemetry` prints a Kafka topic's records as JSON lines.
"""
from gwbatch.decode import (
    ERROR_KINDS,
    MAX_BATCH_BYTES,
    Aggregate,
    Batch,
    BatchError,
    Record,
    check_headers,
    decode_batch,
)

__all__ = ["ERROR_KINDS", "MAX_BATCH_BYTES", "Aggregate", "Batch", "BatchError", "Record", "check_headers",
           "decode_batch"]
