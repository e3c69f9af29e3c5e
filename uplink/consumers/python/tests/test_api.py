"""The package's API beyond the vectors: the forms headers come in, errors, the DataFrame."""
import pytest

import gwbatch
from conftest import load_vectors

VECTORS = {name: (spec, value) for name, spec, value in load_vectors()}


def test_headers_as_kafka_list_as_dict_or_none_decode_the_same():
    spec, value = VECTORS["v2_telemetry_basic"]
    as_list = gwbatch.decode_batch(value, [(k, v.encode()) for k, v in spec["headers"]])
    as_dict = gwbatch.decode_batch(value, dict(spec["headers"]))
    bare = gwbatch.decode_batch(value)
    assert as_list.records == as_dict.records == bare.records
    assert as_list.headers == dict(spec["headers"]) and bare.headers == {}
    assert [r.seq for r in bare.records] == sorted(r.seq for r in bare.records)


def test_a_batch_written_before_record_types_has_no_record_type_header():
    spec, value = VECTORS["v1_telemetry_rows"]
    headers = [(k, v.encode()) for k, v in spec["headers"] if k != "gw-record-type"]
    assert gwbatch.decode_batch(value, headers).record_type == "telemetry"


def test_an_error_says_its_kind_and_is_a_value_error():
    spec, value = VECTORS["bad_truncated_frame"]
    with pytest.raises(ValueError) as e:
        gwbatch.decode_batch(value)
    assert isinstance(e.value, gwbatch.BatchError) and e.value.kind == "bad_compression"
    assert "truncated" in str(e.value) or "decompress" in str(e.value)


def test_every_truncation_of_a_valid_value_is_refused_whole():
    _, value = VECTORS["v2_telemetry_tags_boot"]
    for n in range(len(value)):
        with pytest.raises(gwbatch.BatchError):
            gwbatch.decode_batch(value[:n])


def test_to_dataframe_one_row_per_record_with_tags_and_metrics_as_columns():
    pd = pytest.importorskip("pandas")
    _, value = VECTORS["v2_telemetry_tags_boot"]
    batch = gwbatch.decode_batch(value)
    df = batch.to_dataframe()
    assert len(df) == len(batch.records)
    assert {"gateway_id", "seq", "device", "device_seq", "time", "boot_id", "tag.site", "t"} <= set(df.columns)
    assert str(df["time"].dtype).startswith("datetime64")
    row = df[df["seq"] == 5].iloc[0]
    assert row["device"] == "thermo-c" and row["rssi"] == -71 and row["tag.site"] == ""
    assert pd.isna(df[df["seq"] == 2].iloc[0]["tag.site"])


def test_to_dataframe_of_aggregates_one_row_per_window():
    pytest.importorskip("pandas")
    _, value = VECTORS["v2_aggregate_device"]
    df = gwbatch.decode_batch(value).to_dataframe()
    assert list(df["kind"]) == ["tumbling", "hopping", "session"] and list(df["seq"]) == [201, 207, 230]
