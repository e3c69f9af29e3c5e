#!/usr/bin/env python3
"""An independent verifier of what the gateway wrote to Kafka (run in the venv of
toolchains/python-env.sh).

It shares no code with the gateway: Confluent's Python client (confluent-kafka, its own bundled
librdkafka) reads the topic; batch_check.py reads the batches and judges them against a
firmware-sim manifest (order per partition and gateway, duplicates, redelivered, lost).

Prints one line
  kafka-verify: batches=B records=R expected=E lost=L duplicates=D redelivered=X unexpected=U order=ok|broken
and exits 0 only when lost, duplicates and redelivered are 0 and the order holds (1 otherwise,
2 on a usage or connection problem).

  kafka_verify.py --bootstrap HOST:PORT --topic T --manifest FILE [--isolation read_committed]
                  [--timeout S] [-X librdkafka.key=value ...]
"""
import argparse
import os
import sys
import tempfile
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from batch_check import Checker, load_schema


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

    eof = set()
    with tempfile.TemporaryDirectory() as gen:
        check = Checker(a.manifest, load_schema(gen))
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
            check.batch(msg.partition(), f"partition {msg.partition()} offset {msg.offset()}",
                        header(msg, "gw-gateway-id"), int(header(msg, "gw-first-seq")),
                        int(header(msg, "gw-last-seq")), msg.value())
    consumer.close()

    return check.report("kafka-verify")


if __name__ == "__main__":
    sys.exit(main())
