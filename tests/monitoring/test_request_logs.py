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
    assert window.malformed == 1 and "unreadable" in window.problems[0]


def test_missing_logs_give_an_empty_window(log_prefix):
    window = request_logs.read_window(log_prefix, 0, 1000)
    assert window.files == [] and window.rows == [] and window.served_version is None
