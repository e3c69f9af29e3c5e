"""Decodes one upstream batch: a message value (one zstd frame holding a Batch FlatBuffer) and its
headers, by the rules of the gateway's uplink/FORMAT.md, versions 1 (rows) and 2 (columnar),
telemetry and aggregate batches.

The FlatBuffer accessors are generated from uplink/batch.fbs by flatc when the package is built
(gwbatch._generated). Everything is read and checked before anything is returned: a batch that does
not decode whole raises BatchError, never a partial list of records.

Thread-safety: pure functions; the returned values are immutable dataclasses (their lists aside).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import zstandard

from gwbatch._generated.gw.uplink.fb.Batch import Batch as _FbBatch

try:  # numpy (which pandas brings) reads whole vectors at once; without it, element by element
    import numpy as _np  # noqa: F401

    _HAVE_NUMPY = True
except ImportError:  # pragma: no cover - depends on the environment
    _HAVE_NUMPY = False

MAX_BATCH_BYTES = 64 << 20  # a frame declaring more decompressed bytes is refused (too_large)
FORMAT_VERSIONS = (1, 2)
_MASK = (1 << 64) - 1
_POW10 = [10.0**k for k in range(16)]  # decimal_delta scales 0..15 (exact doubles)
_KINDS = {1: "tumbling", 2: "hopping", 3: "session"}
_SCOPES = {1: "device", 2: "group"}
_RECORD_TYPES = {1: "telemetry", 2: "aggregate"}

#: The kinds of BatchError, the same words as the C++ and Java readers use.
ERROR_KINDS = (
    "bad_compression",  # not exactly one zstd frame with its content size, or it does not decompress
    "too_large",  # the frame declares more than MAX_BATCH_BYTES
    "malformed",  # not a valid Batch FlatBuffer, or its contents are inconsistent
    "unsupported_version",  # format_version or record type newer than this reader
    "header_mismatch",  # a header disagrees with the batch it carries
    "unsupported_codec",  # gw-codec is not zstd, or gw-dict-id names a dictionary
)


class BatchError(ValueError):
    """A message value (or its headers) that is not a whole, valid batch. `kind` is one of ERROR_KINDS."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class Record:
    """One device reading. `seq` is the gateway's sequence number; (gateway_id, seq) identifies it."""

    seq: int
    device: str
    device_seq: int
    time_ms: int  # event time, ms since the Unix epoch, device clock
    boot_id: int  # 0 = unknown
    tags: Dict[str, str]
    metrics: Dict[str, float]  # in the device's order


@dataclass(frozen=True)
class Aggregate:
    """One closed window of the gateway's windowing stage (FORMAT.md, aggregate batches)."""

    seq: int
    id: int
    kind: str  # tumbling, hopping, session
    scope: str  # device, group
    key: str  # the device id (scope device) or the tag value (scope group)
    group_tag: str  # scope group: the tag key; else ""
    metric: str
    window_start_ms: int  # inclusive
    window_end_ms: int  # exclusive
    closed_at_ms: int
    count: int
    sum: float
    min: float
    max: float
    mean: float
    stddev: float
    first_time_ms: int
    first: float
    last_time_ms: int
    last: float
    rate: float
    has_quantiles: bool
    p50: float
    p90: float
    p99: float


@dataclass
class Batch:
    """A decoded batch: `records` (telemetry) or `aggregates` (aggregate), in increasing seq order,
    each within first_seq..last_seq (a seq of the range without an entry was skipped on purpose)."""

    gateway_id: str
    first_seq: int
    last_seq: int
    format_version: int
    record_type: str  # telemetry, aggregate
    records: List[Record] = field(default_factory=list)
    aggregates: List[Aggregate] = field(default_factory=list)
    headers: Dict[str, str] = field(default_factory=dict)

    def to_dataframe(self):
        """A pandas DataFrame: one row per record (gateway_id, seq, device, device_seq, time (UTC),
        boot_id, one column per tag key as tag.<key>, one per metric name), or one per aggregate."""
        import pandas as pd  # optional dependency: pip install edge-gateway-batch[pandas]

        if self.record_type == "aggregate":
            rows = [dict(gateway_id=self.gateway_id, **a.__dict__) for a in self.aggregates]
            return pd.DataFrame(rows, columns=["gateway_id"] + list(Aggregate.__dataclass_fields__))
        rows = []
        for r in self.records:
            row = {
                "gateway_id": self.gateway_id,
                "seq": r.seq,
                "device": r.device,
                "device_seq": r.device_seq,
                "time": r.time_ms,
                "boot_id": r.boot_id,
            }
            row.update({f"tag.{k}": v for k, v in r.tags.items()})
            row.update(r.metrics)
            rows.append(row)
        base = ["gateway_id", "seq", "device", "device_seq", "time", "boot_id"]
        frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=base)
        frame["time"] = pd.to_datetime(frame["time"], unit="ms", utc=True)
        return frame


HeadersLike = Union[None, Mapping[str, Any], Iterable[Tuple[str, Any]]]


def decode_batch(value: bytes, headers: HeadersLike = None) -> Batch:
    """Decodes a message value. `headers`: the message's headers (Kafka: confluent-kafka's
    msg.headers(), a list of (name, bytes)) or properties (Pulsar: a dict), or None; they are
    checked against the batch (check_headers). Raises BatchError."""
    raw = _decompress(value)
    batch = _decode_flatbuffer(raw)
    batch.headers = _header_dict(headers)
    check_headers(batch, batch.headers)
    return batch


def check_headers(batch: Batch, headers: Mapping[str, str]) -> None:
    """gw-codec must be zstd and gw-dict-id 0 (unsupported_codec); gw-gateway-id, gw-first-seq,
    gw-last-seq, gw-schema-version and gw-record-type, where present, equal the batch's
    (header_mismatch)."""
    codec = headers.get("gw-codec")
    if codec is not None and codec != "zstd":
        raise BatchError("unsupported_codec", f"gw-codec {codec!r}: only zstd is defined")
    dict_id = headers.get("gw-dict-id")
    if dict_id is not None and dict_id != "0":
        raise BatchError("unsupported_codec", f"gw-dict-id {dict_id!r}: no dictionary is defined")
    expected = {
        "gw-gateway-id": batch.gateway_id,
        "gw-first-seq": str(batch.first_seq),
        "gw-last-seq": str(batch.last_seq),
        "gw-schema-version": str(batch.format_version),
        "gw-record-type": batch.record_type,
    }
    for name, want in expected.items():
        got = headers.get(name)
        if got is not None and got != want:
            raise BatchError("header_mismatch", f"header {name} is {got!r}, the batch says {want!r}")


def _header_dict(headers: HeadersLike) -> Dict[str, str]:
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: Dict[str, str] = {}
    for name, v in items:
        if v is None:
            continue
        out[name] = v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)
    return out


def _decompress(value: bytes) -> bytes:
    value = bytes(value)
    try:
        size = zstandard.frame_content_size(value)
    except zstandard.ZstdError as e:
        raise BatchError("bad_compression", f"not a zstd frame ({e})") from None
    if size < 0:
        raise BatchError("bad_compression", "the frame does not declare its content size")
    if size > MAX_BATCH_BYTES:
        raise BatchError("too_large", f"the frame declares {size} bytes, more than {MAX_BATCH_BYTES}")
    try:
        d = zstandard.ZstdDecompressor().decompressobj()
        raw = d.decompress(value)
    except zstandard.ZstdError as e:
        raise BatchError("bad_compression", f"the frame does not decompress ({e})") from None
    if not d.eof:
        raise BatchError("bad_compression", "the frame is truncated")
    if d.unused_data:
        raise BatchError("bad_compression", f"{len(d.unused_data)} bytes after the frame")
    if len(raw) != size:
        raise BatchError("bad_compression", "the content is not the size the frame declares")
    return raw


def _text(b: Optional[bytes], what: str) -> str:
    if b is None:
        raise BatchError("malformed", f"{what} is absent")
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise BatchError("malformed", f"{what} is not UTF-8") from None


def _numbers(obj: Any, name: str) -> Optional[List[int]]:
    """A numeric vector field as a list, None when absent."""
    if getattr(obj, name + "IsNone")():
        return None
    if _HAVE_NUMPY:
        return getattr(obj, name + "AsNumpy")().tolist()
    get = getattr(obj, name)
    return [get(i) for i in range(getattr(obj, name + "Length")())]


def _signed(u: int) -> int:
    u &= _MASK
    return u - (1 << 64) if u >> 63 else u


def _decode_flatbuffer(raw: bytes) -> Batch:
    if len(raw) < 8 or not _FbBatch.BatchBufferHasIdentifier(raw, 0):
        raise BatchError("malformed", "not a Batch FlatBuffer (identifier GWB1)")
    try:
        b = _FbBatch.GetRootAs(raw, 0)
        version = b.FormatVersion()
        gateway_id = b.GatewayId()
        first, last = b.FirstSeq(), b.LastSeq()
        record_type = b.RecordType()
    except (IndexError, struct.error, ValueError, TypeError, OverflowError) as e:
        raise BatchError("malformed", f"unreadable batch table ({e})") from None
    if gateway_id is None:
        raise BatchError("malformed", "gateway_id is absent")
    if version not in FORMAT_VERSIONS:
        raise BatchError("unsupported_version", f"format_version {version}")
    batch = Batch(_text(gateway_id, "gateway_id"), first, last, version, "telemetry")
    if first > last:
        raise BatchError("malformed", f"first_seq {first} > last_seq {last}")
    if record_type not in _RECORD_TYPES:
        raise BatchError("unsupported_version", f"record type {record_type}")
    batch.record_type = _RECORD_TYPES[record_type]
    try:
        if batch.record_type == "aggregate":
            batch.aggregates = _aggregates(b, first, last)
        elif version == 1:
            batch.records = _rows(b, first, last)
        else:
            batch.records = _columnar(b, first, last)
    except (IndexError, struct.error, ValueError, TypeError, OverflowError, RecursionError) as e:
        if isinstance(e, BatchError):
            raise
        raise BatchError("malformed", f"unreadable batch contents ({e})") from None
    return batch


def _check_distinct(names: Sequence[str], what: str) -> None:
    if len(set(names)) != len(names):
        raise BatchError("malformed", f"a record has a {what} twice")


def _check_next_seq(seq: int, prev: Optional[int], first: int, last: int, what: str) -> None:
    """Entries of a rows or aggregate batch: strictly increasing seqs, each within first..last."""
    if (prev is not None and seq <= prev) or not first <= seq <= last:
        raise BatchError("malformed", f"{what} seq {seq} out of order or outside {first}..{last}")


def _rows(b: _FbBatch, first: int, last: int) -> List[Record]:
    records: List[Record] = []
    prev = None
    for i in range(b.RecordsLength()):
        r = b.Records(i)
        seq = r.Seq()
        _check_next_seq(seq, prev, first, last, "record")
        prev = seq
        names, values = [], []
        for k in range(r.MetricsLength()):
            m = r.Metrics(k)
            names.append(_text(m.Name(), "a metric name"))
            values.append(m.Value())
        _check_distinct(names, "metric name")
        records.append(Record(seq, _text(r.DeviceId(), "a device id"), r.DeviceSeq(), r.TimeMs(), 0, {},
                              dict(zip(names, values))))
    return records


def _columnar(b: _FbBatch, first: int, last: int) -> List[Record]:
    runs = b.DevicesLength()
    run_lengths = _numbers(b, "RunLengths") or []
    if len(run_lengths) != runs:
        raise BatchError("malformed", "devices and run_lengths differ in length")
    n = sum(run_lengths)
    seq_d = _numbers(b, "SeqDeltas") or []
    dseq_d = _numbers(b, "DeviceSeqDeltas") or []
    time_d = _numbers(b, "TimeDeltas") or []
    shape_ids = _numbers(b, "ShapeIds") or []
    if not (len(seq_d) == len(dseq_d) == len(time_d) == len(shape_ids) == n):
        raise BatchError("malformed", f"the per-record vectors do not hold {n} entries")
    tag_ids = _numbers(b, "TagSetIds")
    boot_ids = _numbers(b, "BootIds")
    if (tag_ids is not None and len(tag_ids) != n) or (boot_ids is not None and len(boot_ids) != n):
        raise BatchError("malformed", f"tag_set_ids or boot_ids do not hold {n} entries")
    names = [_text(b.MetricNames(i), "a metric name") for i in range(b.MetricNamesLength())]
    shapes = []
    for s in range(b.ShapesLength()):
        metrics = _numbers(b.Shapes(s), "Metrics") or []
        if any(m >= len(names) for m in metrics):
            raise BatchError("malformed", "a shape names a metric beyond metric_names")
        _check_distinct(metrics, "metric name")
        shapes.append(metrics)
    tag_sets = None
    if tag_ids is not None:
        tag_sets = []
        for t in range(b.TagSetsLength()):
            ts = b.TagSets(t)
            pairs = [(_text(ts.Tags(g).Key(), "a tag key"), _text(ts.Tags(g).Value(), "a tag value"))
                     for g in range(ts.TagsLength())]
            _check_distinct([k for k, _ in pairs], "tag key")
            tag_sets.append(dict(pairs))
    # One column per metric name, read front to back; "previous" restarts at each run.
    columns: List[Optional[Tuple[int, int, List[int], int]]] = [None] * len(names)  # enc, scale, values, count
    for c in range(b.ColumnsLength()):
        col = b.Columns(c)
        m = col.Metric()
        if m >= len(names) or columns[m] is not None:
            raise BatchError("malformed", "a column for an unknown or repeated metric")
        enc, scale = col.Encoding(), col.Scale()
        if enc == 1 and scale >= len(_POW10) or enc not in (0, 1):
            raise BatchError("malformed", f"column encoding {enc} scale {scale}")
        bits = _numbers(col, "Bits") or []
        deltas = _numbers(col, "Deltas") or []
        columns[m] = (enc, scale, bits if enc == 0 else deltas, len(bits) + len(deltas))
    nxt = [0] * len(names)
    prev = [0] * len(names)
    last_run = [-1] * len(names)
    records: List[Record] = []
    i = 0
    for r in range(runs):
        device = _text(b.Devices(r), "a device id")
        seq = dseq = t = delta = 0
        for k in range(run_lengths[r]):
            sd = seq_d[i]
            if k > 0 and sd == 0:
                raise BatchError("malformed", "seqs do not increase within a run")
            seq = first + sd if k == 0 else seq + sd
            if seq > last:
                raise BatchError("malformed", f"seq {seq} beyond last_seq {last}")
            dseq = (dseq_d[i] if k == 0 else dseq + dseq_d[i]) & _MASK
            if k == 0:
                t = time_d[i] & _MASK
            else:
                delta = (time_d[i] if k == 1 else delta + time_d[i]) & _MASK
                t = (t + delta) & _MASK
            shape = shape_ids[i]
            if shape >= len(shapes):
                raise BatchError("malformed", f"shape id {shape} beyond the {len(shapes)} shapes")
            tags: Dict[str, str] = {}
            if tag_ids is not None:
                if tag_ids[i] >= len(tag_sets):
                    raise BatchError("malformed", "a tag set id beyond tag_sets")
                tags = dict(tag_sets[tag_ids[i]])
            metrics: Dict[str, float] = {}
            for m in shapes[shape]:
                col = columns[m]
                if col is None:
                    raise BatchError("malformed", f"metric {names[m]!r} has no column")
                enc, scale, vals, _ = col
                first_of_run = last_run[m] != r
                last_run[m] = r
                idx = nxt[m]
                nxt[m] += 1
                if idx >= len(vals):
                    raise BatchError("malformed", f"column {names[m]!r} has too few values")
                if enc == 0:
                    bits = vals[idx] if first_of_run else vals[idx] ^ prev[m]
                    prev[m] = bits
                    metrics[names[m]] = struct.unpack("<d", struct.pack("<Q", bits))[0]
                else:
                    v = vals[idx] if first_of_run else _signed(prev[m] + vals[idx])
                    prev[m] = v
                    metrics[names[m]] = float(v) / _POW10[scale]
            records.append(Record(seq, device, dseq, _signed(t), boot_ids[i] if boot_ids is not None else 0, tags,
                                  metrics))
            i += 1
    for m, col in enumerate(columns):
        if col is not None and nxt[m] != col[3]:
            raise BatchError("malformed", f"column {names[m]!r} has values left over")
    records.sort(key=lambda rec: rec.seq)
    for a, c in zip(records, records[1:]):
        if a.seq == c.seq:
            raise BatchError("malformed", f"seq {a.seq} twice")
    return records


def _aggregates(b: _FbBatch, first: int, last: int) -> List[Aggregate]:
    out: List[Aggregate] = []
    prev = None
    for i in range(b.AggregatesLength()):
        a = b.Aggregates(i)
        seq = a.Seq()
        _check_next_seq(seq, prev, first, last, "aggregate")
        prev = seq
        kind, scope = a.Kind(), a.Scope()
        if kind not in _KINDS or scope not in _SCOPES:
            raise BatchError("malformed", f"window kind {kind} or scope {scope}")
        group_tag = a.GroupTag()
        out.append(Aggregate(
            seq=seq, id=a.Id(), kind=_KINDS[kind], scope=_SCOPES[scope], key=_text(a.Key(), "an aggregate key"),
            group_tag=_text(group_tag, "group_tag") if group_tag is not None else "",
            metric=_text(a.Metric(), "an aggregate metric"), window_start_ms=a.WindowStartMs(),
            window_end_ms=a.WindowEndMs(), closed_at_ms=a.ClosedAtMs(), count=a.Count(), sum=a.Sum(), min=a.Min(),
            max=a.Max(), mean=a.Mean(), stddev=a.Stddev(), first_time_ms=a.FirstTimeMs(), first=a.First(),
            last_time_ms=a.LastTimeMs(), last=a.Last(), rate=a.Rate(), has_quantiles=bool(a.HasQuantiles()),
            p50=a.P50(), p90=a.P90(), p99=a.P99()))
    return out
