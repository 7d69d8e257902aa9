"""Reading request log windows: rows, versions, window bounds, malformed input."""

import pytest

from monitoring import request_logs


def test_reads_rows_of_the_window_only(write_log, log_prefix, make_rows, make_log):
    rows = make_rows(3)
    write_log(
        [
            make_log(rows, 100, version=1, request_id="r1", probabilities=[0.1, 0.6, 0.35]),
            make_log(rows[:1], 150, version=2, request_id="r2", probabilities=[0.8]),
            make_log(rows, 200),
        ]
    )
    window = request_logs.read_window(log_prefix, 100, 200)
    assert window.records == 2 and window.outside == 1 and window.malformed == 0
    assert len(window.rows) == 4
    assert window.versions == {1: 3, 2: 1} and window.served_version == 2
    assert window.rows[0]["payment_type"] == rows[0]["payment_type"]
    assert abs(window.rows[0]["fare"] - rows[0]["fare"]) < 1e-3
    assert window.rows[0]["trip_seconds"] == rows[0]["trip_seconds"]
    # Row i of a batch is `<id>/<i>` with prediction i; a one-row request keeps its id.
    assert [(p["request_id"], p["prediction"], p["version"]) for p in window.predictions] == [
        ("r1/0", pytest.approx(0.1), 1),
        ("r1/1", pytest.approx(0.6), 1),
        ("r1/2", pytest.approx(0.35), 1),
        ("r2", pytest.approx(0.8), 2),
    ]
    assert [r["trip_seconds"] for r in window.rows] == [r["trip_seconds"] for r in rows + rows[:1]]


def test_files_in_time_order_from_prefix_or_directory(write_log, log_prefix, make_rows, make_log):
    second = write_log([make_log(make_rows(1), 10)], seq=2)
    first = write_log([make_log(make_rows(1), 10)], seq=1)
    assert request_logs.log_files(log_prefix) == [first, second]
    assert request_logs.log_files(log_prefix.rsplit("/", 1)[0]) == [first, second]


def test_malformed_records_are_counted_not_skipped(write_log, log_prefix, make_rows, make_log):
    write_log([b"not a proto \xff\xfe", make_log(make_rows(2), 100), b""])
    window = request_logs.read_window(log_prefix, 0, 1000)
    assert window.records == 1 and len(window.rows) == 2
    assert window.malformed == 2
    assert all("record" in p for p in window.problems)


def test_truncated_file_is_reported(write_log, log_prefix, make_rows, make_log):
    path = write_log([make_log(make_rows(2), 100), make_log(make_rows(2), 101)])
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-7])
    window = request_logs.read_window(log_prefix, 0, 1000)
    assert window.records == 1
    assert window.malformed == 1 and "truncated" in window.problems[0]


def _flip(path: str, offsets: list) -> None:
    with open(path, "r+b") as f:
        for offset in offsets:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ 0xFF]))


def _record_offsets(records: list) -> list:
    """Start offset of each record in a TFRecord file (16 bytes of framing each)."""
    offsets, pos = [], 0
    for record in records:
        offsets.append(pos)
        pos += 16 + len(record)
    return offsets


def test_damaged_records_cost_only_themselves(write_log, log_prefix, make_rows, make_log):
    records = [make_log(make_rows(1), 100 + i) for i in range(50)]
    path = write_log(records)
    starts = _record_offsets(records)
    # One byte inside the payload of record 10, one in the length field of record 30.
    _flip(path, [starts[10] + 12 + len(records[10]) // 2, starts[30] + 2])
    window = request_logs.read_window(log_prefix, 0, 1000)
    assert window.records == 48 and len(window.rows) == 48
    assert window.malformed == 2
    kept = sorted(p["timestamp"] for p in window.predictions)
    assert kept == [100.0 + i for i in range(50) if i not in (10, 30)]
    assert window.skipped_bytes == (16 + len(records[10])) + (16 + len(records[30]))
    assert len(window.problems) == 2 and "skipped 1 record(s)" in window.problems[0]


def test_garbage_between_records_is_skipped(write_log, log_prefix, make_rows, make_log):
    records = [make_log(make_rows(1), 100 + i) for i in range(3)]
    path = write_log(records)
    with open(path, "rb") as f:
        data = f.read()
    cut = _record_offsets(records)[2]
    with open(path, "wb") as f:
        f.write(data[:cut] + b"\x00" * 37 + data[cut:])
    window = request_logs.read_window(log_prefix, 0, 1000)
    assert window.records == 3 and window.malformed == 1 and window.skipped_bytes == 37


def test_missing_logs_give_an_empty_window(log_prefix):
    window = request_logs.read_window(log_prefix, 0, 1000)
    assert window.files == [] and window.rows == [] and window.served_version is None


def test_adjacent_damaged_records_count_each(write_log, log_prefix, make_rows, make_log):
    records = [make_log(make_rows(1), 100 + i) for i in range(20)]
    path = write_log(records)
    starts = _record_offsets(records)
    _flip(path, [starts[10] + 12 + 5, starts[11] + 12 + 5])  # payloads; headers intact
    window = request_logs.read_window(log_prefix, 0, 1000)
    assert window.records == 18 and window.malformed == 2
    assert window.problems == [
        f"{path} bytes {starts[10]}-{starts[12]}: damaged or truncated, skipped 2 record(s)"
    ]


def test_integer_features_logged_as_float64_with_nan_are_missing(write_log, log_prefix):
    """Requests to serving_default send integers as float64, NaN = missing, "" = missing."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    from monitoring import drift
    from monitoring.cli import DEFAULT_SCHEMA

    schema = drift.load_schema(DEFAULT_SCHEMA)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "taxi"
    tracts = np.array([17031081500.0, np.nan, 17031320100.0, np.nan], np.float64)
    request.inputs["dropoff_census_tract"].CopyFrom(tf.make_tensor_proto(tracts))
    request.inputs["company"].CopyFrom(
        tf.make_tensor_proto(np.array([b"Flash Cab", b"", b"", b"Flash Cab"], dtype=object))
    )
    entry = prediction_log_pb2.PredictionLog()
    entry.predict_log.request.CopyFrom(request)
    entry.log_metadata.model_spec.CopyFrom(request.model_spec)
    entry.log_metadata.timestamp_secs = 100
    write_log([entry.SerializeToString()])
    window = request_logs.read_window(log_prefix, 0, 200)
    assert [r["dropoff_census_tract"] for r in window.rows][::2] == [17031081500, 17031320100]
    stats = drift.statistics_from_rows(window.rows, schema)
    by_name = {f.path.step[0]: f for f in stats.datasets[0].features}
    tract = by_name["dropoff_census_tract"]
    assert tract.num_stats.common_stats.num_missing == 2  # not two zeros
    assert tract.num_stats.min == 17031081500
    assert by_name["company"].string_stats.common_stats.num_missing == 2
