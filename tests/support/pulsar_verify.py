#!/usr/bin/env python3
"""An independent verifier of what the gateway wrote to Pulsar (run in the venv of
toolchains/python-env.sh).

It shares no code with the gateway: Apache Pulsar's official Python client (pulsar-client, over
Pulsar's binary protocol, where the gateway speaks the WebSocket API) reads the whole topic from
the earliest message with a reader; batch_check.py reads the batches and judges them against a
firmware-sim manifest (order per gateway, duplicates, redelivered, lost). Nothing is deduplicated
here: a batch the topic holds twice shows as duplicates.

With --record-type aggregate it reads the aggregate batches instead (the aggregates topic), without
a manifest: every aggregate record once (no gateway seq twice), in order; they count as unexpected.

Prints one line
  pulsar-verify: batches=B records=R expected=E lost=L duplicates=D redelivered=X unexpected=U order=ok|broken
and exits 0 only when lost, duplicates and redelivered are 0 and the order holds (1 otherwise,
2 on a usage or connection problem).

  pulsar_verify.py --service-url pulsar://HOST:PORT --topic persistent://T/NS/NAME --manifest FILE
                   [--token JWT] [--timeout S] [--record-type telemetry|aggregate]
"""
import argparse
import sys
import tempfile
import time

import pulsar

from batch_check import Checker, load_schema


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--service-url", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--manifest")
    p.add_argument("--record-type", default="telemetry", choices=["telemetry", "aggregate"])
    p.add_argument("--token")
    p.add_argument("--timeout", type=float, default=120, help="seconds to reach the end of the topic")
    a = p.parse_args()
    if a.manifest is None and a.record_type == "telemetry":
        p.error("--manifest is required for telemetry")

    client = pulsar.Client(a.service_url, authentication=pulsar.AuthenticationToken(a.token) if a.token else None,
                           operation_timeout_seconds=30, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        reader = client.create_reader(a.topic, pulsar.MessageId.earliest)
        with tempfile.TemporaryDirectory() as gen:
            check = Checker(a.manifest, load_schema(gen))
            deadline = time.monotonic() + a.timeout
            while reader.has_message_available():
                if time.monotonic() > deadline:
                    print(f"pulsar-verify: the end of {a.topic} not reached in {a.timeout:.0f} s", file=sys.stderr)
                    return 2
                msg = reader.read_next(timeout_millis=30000)
                props = msg.properties()
                if props.get("gw-record-type", "telemetry") != a.record_type:
                    continue
                check.batch(0, f"message {msg.message_id()}", props.get("gw-gateway-id"),
                            int(props["gw-first-seq"]), int(props["gw-last-seq"]), msg.data())
            return check.report("pulsar-verify")
    except pulsar.PulsarException as e:
        print(f"pulsar-verify: {e}", file=sys.stderr)
        return 2
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
