"""What the independent verifiers (kafka_verify.py, pulsar_verify.py) share: reading the gateway's
batches as uplink/FORMAT.md describes them, with no code of the gateway's (`zstandard` decompresses
a batch, code that flatc generates from uplink/batch.fbs at run time reads the FlatBuffer), and
judging the records read against a firmware-sim manifest ("DEVICE SEQ [BOOT] [resent]"):

- order: per stream (a partition) and gateway, batches cover increasing, disjoint gateway seq
  ranges, and the records of a batch lie inside its range in increasing seq order;
- duplicates: a (gateway, seq) twice; redelivered: a manifest reading (device, boot, seq) stored
  under two gateway seqs; lost: a manifest reading not on the topic.
Readings of devices the manifest does not list (the tests' markers) are counted as unexpected and
not judged.
"""
import collections
import os
import subprocess
import sys

import zstandard

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


def aggregates_of(batch):
    """(seq, "", 0, 0) of every aggregate record of an aggregate batch (no device reading)."""
    return sorted((batch.Aggregates(j).Seq(), "", 0, 0) for j in range(batch.AggregatesLength()))


def read_manifest(path):
    expected, resent = set(), set()
    if path is None:
        return expected, resent
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            key = (fields[0], int(fields[1]), int(fields[2]) if len(fields) > 2 and fields[2] != "resent" else 0)
            (resent if fields[-1] == "resent" else expected).add(key)
    return expected, resent


class Checker:
    """Takes the topic's telemetry batches in order, then reports."""

    def __init__(self, manifest, Batch):
        """manifest: a firmware-sim manifest, or None (aggregate batches: no readings expected)."""
        self.Batch = Batch
        self.dctx = zstandard.ZstdDecompressor()
        self.expected, self.resent = read_manifest(manifest)
        self.devices = {d for d, _, _ in self.expected}
        self.seen_seq = set()                  # (gateway, seq)
        self.readings = collections.Counter()  # (device, seq, boot) -> gateway seqs storing it
        self.last_range = {}                   # (stream, gateway) -> last seq of the previous batch
        self.batches = self.records = self.duplicates = self.unexpected = 0
        self.order_errors = []

    def batch(self, stream, where, gateway, first, last, value):
        """One message: its stream (partition), where it is (for messages), its gw-* headers, its value."""
        batch = self.Batch.GetRootAs(self.dctx.decompress(value), 0)
        self.batches += 1
        if (batch.FirstSeq(), batch.LastSeq()) != (first, last) or batch.GatewayId().decode() != gateway:
            self.order_errors.append(f"{where}: headers {gateway} {first}..{last} do not match the batch")
        prev = self.last_range.get((stream, gateway))
        if prev is not None and first <= prev:
            self.order_errors.append(f"{where}: {gateway} {first}..{last} after ..{prev}")
        self.last_range[(stream, gateway)] = max(last, prev or 0)
        previous_seq = first - 1
        for seq, device, dseq, boot in (aggregates_of(batch) if batch.AggregatesLength() else records_of(batch)):
            self.records += 1
            if not first <= seq <= last or seq <= previous_seq:
                self.order_errors.append(f"{where}: record seq {seq} outside or out of order in {first}..{last}")
            previous_seq = seq
            if (gateway, seq) in self.seen_seq:
                self.duplicates += 1
                continue
            self.seen_seq.add((gateway, seq))
            if device not in self.devices:
                self.unexpected += 1
                continue
            self.readings[(device, dseq, boot)] += 1

    def report(self, name):
        """Prints the verdict line (and the first order errors); returns the exit code (0 or 1)."""
        lost = sum(1 for k in self.expected if self.readings[k] == 0)
        redelivered = sum(n - 1 for n in self.readings.values() if n > 1)
        unexpected = self.unexpected + sum(1 for k in self.readings if k not in self.expected and k not in self.resent)
        for e in self.order_errors[:10]:
            print(f"{name}: order: {e}", file=sys.stderr)
        print(f"{name}: batches={self.batches} records={self.records} expected={len(self.expected)} lost={lost} "
              f"duplicates={self.duplicates} redelivered={redelivered} unexpected={unexpected} "
              f"order={'ok' if not self.order_errors else 'broken'}")
        return 0 if lost == 0 and self.duplicates == 0 and redelivered == 0 and not self.order_errors else 1
