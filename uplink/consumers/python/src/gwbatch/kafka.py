"""python -m gwbatch: prints the records of the gateway's batches in a Kafka topic as JSON lines.

    python -m gwbatch --bootstrap 127.0.0.1:9092 --topic telemetry [--dedup] [--idle-exit-ms 2000]

Reads every partition from the beginning (or, with --group, as a consumer group that commits what it
printed). One line per record: {"gateway", "seq", "device", "device_seq", "boot_id", "time_ms",
"tags", "metrics"}; aggregate batches give one line per window ("type": "aggregate"). A value that
is not a whole batch is reported on stderr (partition, offset, the reason) and skipped.
Non-finite values print as null (JSON has no NaN). --dedup prints each (gateway id, seq) once: the
gateway writes each record once, but a consumer that must not see a copy (after a broker's retried
write, or from the gateway's own at-least-once resend) keys by that pair. Needs confluent-kafka
(pip install edge-gateway-batch[kafka]).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Dict, Iterator, Optional, Set, Tuple

from gwbatch.decode import Batch, BatchError, decode_batch


def _finite(v: float) -> Optional[float]:
    return v if math.isfinite(v) else None


def lines(batch: Batch) -> Iterator[Tuple[int, dict]]:
    """(seq, JSON object) per record or aggregate of a batch."""
    for r in batch.records:
        yield r.seq, {
            "gateway": batch.gateway_id,
            "seq": r.seq,
            "device": r.device,
            "device_seq": r.device_seq,
            "boot_id": r.boot_id,
            "time_ms": r.time_ms,
            "tags": r.tags,
            "metrics": {k: _finite(v) for k, v in r.metrics.items()},
        }
    for a in batch.aggregates:
        obj = {"gateway": batch.gateway_id, "type": "aggregate"}
        obj.update({k: _finite(v) if isinstance(v, float) else v for k, v in a.__dict__.items()})
        yield a.seq, obj


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gwbatch", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, host:port[,...]")
    p.add_argument("--topic", required=True)
    p.add_argument("--group", help="read as this consumer group and commit what was printed (default: every "
                   "partition from the beginning, nothing committed)")
    p.add_argument("--dedup", action="store_true", help="print each (gateway id, seq) once")
    p.add_argument("--idle-exit-ms", type=int, default=0,
                   help="exit when nothing arrived for this long (0: never); before the first message, at least 30 s "
                        "(joining and fetching take a while on a busy machine)")
    p.add_argument("--max-records", type=int, default=0, help="exit after this many lines (0: no limit)")
    p.add_argument("-X", action="append", default=[], metavar="KEY=VALUE", help="a librdkafka property")
    a = p.parse_args(argv)
    try:
        from confluent_kafka import Consumer, KafkaError, TopicPartition
    except ImportError:
        print("gwbatch: confluent-kafka is not installed (pip install edge-gateway-batch[kafka])", file=sys.stderr)
        return 2

    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group or f"gwbatch-{os.getpid()}-{time.time_ns()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    for kv in a.X:
        k, _, v = kv.partition("=")
        conf[k] = v
    consumer = Consumer(conf)
    try:
        if a.group:
            consumer.subscribe([a.topic])
        else:
            meta = consumer.list_topics(a.topic, timeout=30)
            topic = meta.topics.get(a.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                print(f"gwbatch: topic {a.topic}: {topic.error if topic else 'missing'}", file=sys.stderr)
                return 2
            consumer.assign([TopicPartition(a.topic, n, 0) for n in sorted(topic.partitions)])
        seen: Dict[str, Set[int]] = {}
        printed = skipped = removed = 0
        last_message = time.monotonic()
        received = False
        while a.max_records == 0 or printed < a.max_records:
            msg = consumer.poll(0.2)
            if msg is None:
                limit = a.idle_exit_ms if received else max(a.idle_exit_ms, 30_000)
                if a.idle_exit_ms and (time.monotonic() - last_message) * 1000 >= limit:
                    break
                continue
            last_message = time.monotonic()
            received = True
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    print(f"gwbatch: {msg.error()}", file=sys.stderr)
                continue
            try:
                batch = decode_batch(msg.value() or b"", msg.headers())
            except BatchError as e:
                skipped += 1
                print(f"gwbatch: skipped {msg.topic()}[{msg.partition()}]@{msg.offset()}: {e}", file=sys.stderr)
                continue
            for seq, obj in lines(batch):
                if a.dedup:
                    ids = seen.setdefault(batch.gateway_id, set())
                    if seq in ids:
                        removed += 1
                        continue
                    ids.add(seq)
                sys.stdout.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
                printed += 1
                if a.max_records and printed >= a.max_records:
                    break
            sys.stdout.flush()
            if a.group:
                consumer.commit(message=msg, asynchronous=False)
        print(f"gwbatch: {printed} records printed, {skipped} messages skipped"
              + (f", {removed} copies removed" if a.dedup else ""), file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        consumer.close()
