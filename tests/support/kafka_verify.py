#!/usr/bin/env python3
"""An independent verifier of what the gateway wrote to Kafka (run in the venv of
toolchains/python-env.sh).

It shares no code with the gateway: Confluent's Python client (confluent-kafka, its own bundled
librdkafka) reads the topic, `zstandard` decompresses each batch, and code that flatc generates
from uplink/batch.fbs at run time reads the FlatBuffer; the records are rebuilt as
uplink/FORMAT.md describes. Then, against a firmware-sim manifest ("DEVICE SEQ [BOOT] [resent]"):

- order: per partition and gateway, batches cover increasing, disjoint gateway seq ranges, and the
  records of a batch lie inside its range in increasing seq order;
- duplicates: a (gateway, seq) twice; redelivered: a manifest reading (device, boot, seq) stored
  under two gateway seqs; lost: a manifest reading not on the topic.

Prints one line
  kafka-verify: batches=B records=R expected=E lost=L duplicates=D redelivered=X unexpected=U order=ok|broken
and exits 0 only when lost, duplicates and redelivered are 0 and the order holds (1 otherwise,
2 on a usage or connection problem). Readings of devices the manifest does not list (the tests'
markers) are counted as unexpected and not judged.

  kafka_verify.py --bootstrap HOST:PORT --topic T --manifest FILE [--isolation read_committed]
                  [--timeout S] [-X librdkafka.key=value ...]
"""
import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time

import zstandard
from confluent_kafka import Consumer, KafkaError, TopicPartition

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_schema(workdir):
    """Generates the Python reader of uplink/batch.fbs with flatc and imports it."""
    subprocess.run(["flatc", "--python", "-o", workdir, os.path.join(ROOT, "uplink", "batch.fbs")], check=True)
    sys.path.insert(0, workdir)
    from gw.uplink.fb.Batch import Batch  # noqa: E402 (generated above)
    return Batch


def records_of(batch):
    """(seq, device, device_seq, boot_id) of every telemetry record, as uplink/FORMAT.md rebuilds them."""
    out = []
    if batch.FormatVersion() == 1:
        for j in range(batch.RecordsLength()):
            r = batch.Records(j)
            out.append((r.Seq(), r.DeviceId().decode(), r.DeviceSeq(), 0))
        return out
    j = 0
    mask = (1 << 64) - 1
    has_boot = not batch.BootIdsIsNone()
    for run in range(batch.DevicesLength()):
        device = batch.Devices(run).decode()
        seq = dseq = None
        for _ in range(batch.RunLengths(run)):
            if seq is None:
                seq = (batch.FirstSeq() + batch.SeqDeltas(j)) & mask
                dseq = batch.DeviceSeqDeltas(j) & mask
            else:
                seq = (seq + batch.SeqDeltas(j)) & mask
                dseq = (dseq + batch.DeviceSeqDeltas(j)) & mask
            out.append((seq, device, dseq, batch.BootIds(j) if has_boot else 0))
            j += 1
    out.sort()
    return out


def read_manifest(path):
    expected, resent = set(), set()
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            key = (fields[0], int(fields[1]), int(fields[2]) if len(fields) > 2 and fields[2] != "resent" else 0)
            (resent if fields[-1] == "resent" else expected).add(key)
    return expected, resent


def header(msg, name):
    for k, v in msg.headers() or []:
        if k == name:
            return v.decode() if v is not None else None
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--isolation", default="read_uncommitted", choices=["read_uncommitted", "read_committed"])
    p.add_argument("--timeout", type=float, default=120, help="seconds to reach the end of the topic")
    p.add_argument("-X", action="append", default=[], help="a librdkafka property key=value")
    a = p.parse_args()

    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": f"kafka-verify-{os.getpid()}-{time.time_ns()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": a.isolation,
    }
    for kv in a.X:
        k, _, v = kv.partition("=")
        conf[k] = v
    consumer = Consumer(conf)
    meta = consumer.list_topics(a.topic, timeout=30)
    topic = meta.topics.get(a.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        print(f"kafka-verify: topic {a.topic}: {topic.error if topic else 'missing'}", file=sys.stderr)
        return 2
    partitions = sorted(topic.partitions)
    consumer.assign([TopicPartition(a.topic, p, 0) for p in partitions])

    dctx = zstandard.ZstdDecompressor()
    expected, resent = read_manifest(a.manifest)
    devices = {d for d, _, _ in expected}
    seen_seq = set()            # (gateway, seq)
    readings = collections.Counter()  # (device, seq, boot) -> gateway seqs storing it
    last_range = {}             # (partition, gateway) -> last seq of the previous batch
    batches = records = duplicates = unexpected = 0
    order_errors = []
    eof = set()
    with tempfile.TemporaryDirectory() as gen:
        Batch = load_schema(gen)
        deadline = time.monotonic() + a.timeout
        while len(eof) < len(partitions):
            if time.monotonic() > deadline:
                print(f"kafka-verify: the end of {a.topic} not reached in {a.timeout:.0f} s", file=sys.stderr)
                return 2
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(msg.partition())
                    continue
                print(f"kafka-verify: {msg.error()}", file=sys.stderr)
                if msg.error().fatal():
                    return 2
                continue
            eof.discard(msg.partition())
            if header(msg, "gw-record-type") not in (None, "telemetry"):
                continue
            gateway = header(msg, "gw-gateway-id")
            first, last = int(header(msg, "gw-first-seq")), int(header(msg, "gw-last-seq"))
            batch = Batch.GetRootAs(dctx.decompress(msg.value()), 0)
            batches += 1
            if (batch.FirstSeq(), batch.LastSeq()) != (first, last) or batch.GatewayId().decode() != gateway:
                order_errors.append(f"offset {msg.offset()}: headers {gateway} {first}..{last} do not match the batch")
            prev = last_range.get((msg.partition(), gateway))
            if prev is not None and first <= prev:
                order_errors.append(f"partition {msg.partition()} offset {msg.offset()}: {gateway} {first}..{last} after ..{prev}")
            last_range[(msg.partition(), gateway)] = max(last, prev or 0)
            previous_seq = first - 1
            for seq, device, dseq, boot in records_of(batch):
                records += 1
                if not first <= seq <= last or seq <= previous_seq:
                    order_errors.append(f"offset {msg.offset()}: record seq {seq} outside or out of order in {first}..{last}")
                previous_seq = seq
                if (gateway, seq) in seen_seq:
                    duplicates += 1
                    continue
                seen_seq.add((gateway, seq))
                if device not in devices:
                    unexpected += 1
                    continue
                readings[(device, dseq, boot)] += 1
    consumer.close()

    lost = sum(1 for k in expected if readings[k] == 0)
    redelivered = sum(n - 1 for n in readings.values() if n > 1)
    unexpected += sum(1 for k in readings if k not in expected and k not in resent)
    for e in order_errors[:10]:
        print(f"kafka-verify: order: {e}", file=sys.stderr)
    print(f"kafka-verify: batches={batches} records={records} expected={len(expected)} lost={lost} "
          f"duplicates={duplicates} redelivered={redelivered} unexpected={unexpected} "
          f"order={'ok' if not order_errors else 'broken'}")
    return 0 if lost == 0 and duplicates == 0 and redelivered == 0 and not order_errors else 1


if __name__ == "__main__":
    sys.exit(main())
