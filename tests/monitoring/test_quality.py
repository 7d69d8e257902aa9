"""Live quality: labels CSV, join by request id, accuracy/AUC per version, bad input."""

import json

import pytest

from monitoring import cli, quality, request_logs


def test_auc_and_metrics():
    assert quality.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert quality.auc([0.5, 0.5], [0, 1]) == 0.5  # ties share ranks
    assert quality.auc([0.2, 0.3], [1, 1]) is None
    assert quality.metrics([(0.9, 1), (0.2, 0), (0.6, 0)]) == {
        "labelled": 3,
        "accuracy": pytest.approx(2 / 3),
        "auc": 1.0,
    }
    assert quality.metrics([]) == {"labelled": 0, "accuracy": None, "auc": None}


def test_row_request_ids():
    assert request_logs.row_request_ids("r", 1) == ["r"]
    assert request_logs.row_request_ids("r", 2) == ["r/0", "r/1"]
    assert request_logs.row_request_ids("", 2) == ["", ""]


def test_read_labels_counts_malformed_rows(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("request_id,label\na,1\nb,0\n,1\nc,yes\na,0\n")
    labels = quality.read_labels(str(path))
    assert labels.labels == {"a": 1, "b": 0} and labels.malformed == 3
    assert ["no request_id" in p for p in labels.problems] == [True, False, False]
    assert "line 6: duplicate request_id 'a'" in labels.problems[2]
    path.write_text("id,y\n")
    with pytest.raises(ValueError, match="request_id,label"):
        quality.read_labels(str(path))


def _setup(tmp_path, write_log, make_rows, make_log):
    write_log(
        [
            make_log(make_rows(1), 1000, version=1, request_id="a", probabilities=[0.9]),
            make_log(make_rows(2), 1001, version=1, request_id="b", probabilities=[0.2, 0.7]),
            make_log(make_rows(1), 1002, version=2, request_id="c", probabilities=[0.8]),
            make_log(make_rows(1), 1003, version=2, request_id="d", probabilities=[0.3]),
            make_log(make_rows(1), 5000, version=2, request_id="later", probabilities=[0.3]),
            make_log(make_rows(1), 1004, version=2),  # no request id
        ]
    )
    labels = tmp_path / "labels.csv"
    # b/0 and b/1 have different labels: a batch whose rows were swapped scores differently.
    labels.write_text("request_id,label\na,1\nb/0,0\nb/1,1\nc,1\nd,1\nlater,0\n")
    return str(labels)


def test_join_per_version(tmp_path, write_log, log_prefix, make_rows, make_log):
    labels = quality.read_labels(_setup(tmp_path, write_log, make_rows, make_log))
    logs = request_logs.read_window(log_prefix, float("-inf"), float("inf"))
    result = quality.join(logs.predictions, labels, 900, 2000)
    # (0.9, 1), (0.2, 0), (0.7, 1); swapping b's rows would give accuracy 1/3 and AUC 0.5.
    assert result["versions"]["1"] == {"labelled": 3, "accuracy": 1.0, "auc": 1.0}
    assert result["versions"]["2"] == {"labelled": 2, "accuracy": 0.5, "auc": None}
    assert result["overall"]["labelled"] == 5
    assert result["counts"]["outside_window"] == 1
    assert result["counts"]["predictions_without_id"] == 1
    assert result["counts"]["unknown_request_ids"] == 0


# A 12-row batch, distinct predictions and mixed labels: reversed or shifted by one row,
# the batch scores accuracy 0.25 instead of 0.75.
BATCH_PREDICTIONS = [0.05, 0.92, 0.31, 0.77, 0.12, 0.64, 0.48, 0.83, 0.27, 0.56, 0.09, 0.71]
BATCH_LABELS = [0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]


def test_batched_rows_join_their_own_labels_row_by_row(
    tmp_path, write_log, log_prefix, make_rows, make_log
):
    rows = make_rows(12, seed=4)
    write_log(
        [make_log(rows, 1000, version=3, request_id="batch", probabilities=BATCH_PREDICTIONS)]
    )
    logs = request_logs.read_window(log_prefix, 900, 2000)
    assert [(p["request_id"], p["prediction"]) for p in logs.predictions] == [
        (f"batch/{i}", pytest.approx(p)) for i, p in enumerate(BATCH_PREDICTIONS)
    ]
    # Each logged row is the request's row i (its fare), next to prediction i.
    assert [r["fare"] for r in logs.rows] == [pytest.approx(r["fare"], abs=1e-3) for r in rows]

    path = tmp_path / "labels.csv"
    path.write_text(
        "request_id,label\n" + "".join(f"batch/{i},{y}\n" for i, y in enumerate(BATCH_LABELS))
    )
    result = quality.join(logs.predictions, quality.read_labels(str(path)), 900, 2000)
    # Row by row at 0.5: rows 4 (0.12 labelled 1), 5 (0.64, 0) and 11 (0.71, 0) are wrong.
    # AUC by hand: of the 5 x 7 positive/negative pairs, 28 are ordered right.
    assert result["versions"] == {
        "3": {"labelled": 12, "accuracy": pytest.approx(9 / 12), "auc": pytest.approx(28 / 35)}
    }
    assert result["counts"]["joined"] == 12 and result["counts"]["unknown_request_ids"] == 0


def test_quality_command_reports_unknown_ids(
    tmp_path, write_log, log_prefix, make_rows, make_log, capsys
):
    labels = _setup(tmp_path, write_log, make_rows, make_log)
    argv = [
        "quality",
        "--logs",
        log_prefix,
        "--labels",
        labels,
        "--start",
        "900",
        "--end",
        "2000",
        "--out",
        str(tmp_path / "out"),
    ]
    assert cli.main(argv) == cli.EXIT_OK
    directory = tmp_path / "out" / "quality-900-2000"
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["overall"]["labelled"] == 5
    assert "| 1 | 3 | 1.0000 | 1.0000 |" in (directory / "report.md").read_text()
    assert 'taxi_monitor_live_accuracy{version="2"} 0.5' in (directory / "metrics.prom").read_text()

    with open(labels, "a") as f:
        f.write("ghost-1,1\nghost-2,0\n")
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    assert "2 labels for unknown request ids: 'ghost-1', 'ghost-2'" in capsys.readouterr().err
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["counts"]["unknown_request_ids"] == 2 and summary["overall"]["labelled"] == 5


def test_quality_missing_window_and_labels_file(
    tmp_path, write_log, log_prefix, make_rows, make_log, capsys
):
    labels = _setup(tmp_path, write_log, make_rows, make_log)
    common = ["quality", "--logs", log_prefix, "--out", str(tmp_path / "out")]
    assert cli.main(common + ["--labels", labels, "--start", "7000", "--end", "8000"]) == 2
    assert "missing window: no logged predictions" in capsys.readouterr().err
    assert (
        cli.main(common + ["--labels", str(tmp_path / "none.csv"), "--start", "0", "--end", "1"])
        == 2
    )
    assert "none.csv" in capsys.readouterr().err
