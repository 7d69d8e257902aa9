"""The request-log window check (monitoring/window.py): one function, two callers."""

import json
import os

import pytest

from components.request_log_monitor import component
from monitoring import artifacts, cli, drift, outcome, window
from monitoring.cli import DEFAULT_SCHEMA


@pytest.fixture
def logs(write_log, make_rows, make_log, log_prefix, tmp_path):
    """Logs of 40 normal rows in [1000, 1100), then 40 shifted ones and one malformed record
    in [1100, 1200); training statistics of 200 normal rows and the schema as artifacts."""
    records = [make_log([row], 1000 + i, 3, f"a{i}") for i, row in enumerate(make_rows(40, 1))]
    records += [
        make_log([row], 1100 + i, 3, f"b{i}")
        for i, row in enumerate(make_rows(40, seed=2, shift=True))
    ]
    write_log(records + [b"not a prediction log"])
    schema = drift.load_schema(DEFAULT_SCHEMA)
    training = drift.statistics_from_rows(make_rows(200, seed=3), schema)
    artifacts.write_statistics(str(tmp_path / "training"), "train", training)
    os.makedirs(tmp_path / "schema")
    with open(DEFAULT_SCHEMA) as f, open(tmp_path / "schema" / "schema.pbtxt", "w") as out:
        out.write(f.read())
    return log_prefix


def _features(statistics_dir: str) -> dict:
    """Feature -> its statistics (the order of features in the proto is not fixed)."""
    (dataset,) = artifacts.read_statistics(statistics_dir, "serving").datasets
    return {".".join(f.path.step): f for f in dataset.features}


def _anomalies(anomalies_dir: str):
    """(anomaly_info, drift/skew info by feature) of an ExampleAnomalies folder."""
    anomalies = artifacts.read_anomalies(anomalies_dir, "serving")
    infos = {".".join(i.path.step): i for i in anomalies.drift_skew_info}
    return dict(anomalies.anomaly_info), infos


def test_cli_and_component_give_the_same_result_on_the_same_logs(logs, tmp_path):
    code = cli.main(
        ["window", "--logs", logs, "--start", "1100", "--end", "1200", "--out", str(tmp_path)]
        + ["--training-statistics", str(tmp_path / "training")]
        + ["--max-malformed-fraction", "0.5"]
    )
    facts = component.monitor_window(
        logs,
        1100,
        1200,
        str(tmp_path / "schema"),
        str(tmp_path / "training"),
        str(tmp_path / "stats"),
        str(tmp_path / "anomalies"),
        max_malformed_fraction=0.5,
    )
    directory = tmp_path / "window-1100-1200"
    by_cli = _anomalies(str(directory / "anomalies"))
    assert by_cli == _anomalies(str(tmp_path / "anomalies"))
    assert len(by_cli[1]) == 15  # every served feature compared
    assert _features(str(directory / "statistics")) == _features(str(tmp_path / "stats"))
    summary = json.loads((directory / "summary.json").read_text())
    exceeded = [
        {k: f[k] for k in ("kind", "feature", "measure", "value")}
        for f in summary["findings"]
        if f["exceeded"]
    ]
    assert exceeded == json.loads(facts["findings"])
    # The known answer: fares x5 and every payment Cash, against both the previous
    # window and the training data; thresholds for 40 rows from the null table.
    assert {(f["kind"], f["feature"]) for f in exceeded} >= {
        ("drift", "fare"),
        ("drift", "payment_type"),
        ("skew", "fare"),
        ("skew", "payment_type"),
    }
    assert code == cli.EXIT_FOUND and summary["rows"] == facts["rows"] == 40
    assert summary["previous window rows"] == facts["previous_window_rows"] == 40
    assert summary["counts"]["malformed"] == facts["malformed_records"] == 1
    assert summary["served version"] == 3


def test_check_decides_bad_input_with_a_reason(logs):
    schema = drift.load_schema(DEFAULT_SCHEMA)
    result = window.check(logs, 1100, 1200, schema)  # 1 malformed of 81 records, none allowed
    assert result.errors == ["1 of 81 records malformed (allowed fraction 0.0)"]
    assert result.outcome == outcome.BAD_INPUT and result.validation is not None
    assert result.previous_rows == 40 and len(result.window.rows) == 40
    result = window.check(logs, 1100, 1200, schema, max_malformed_fraction=0.5)
    assert result.outcome == outcome.FOUND and not result.errors
    assert result.features_above("skew") == 0  # no training statistics: drift only
    assert result.features_above("drift") >= 2
    result = window.check(logs, 5000, 6000, schema, max_malformed_fraction=0.5)
    assert result.errors == [
        "missing window: no logged requests in [5000, 6000) (81 records read, 80 outside the window)"
    ]
    assert result.validation is None and result.outcome == outcome.BAD_INPUT
    with pytest.raises(ValueError, match="must be after start"):
        window.check(logs, 1200, 1100, schema)


def test_a_failed_training_lookup_is_bad_input_not_a_crash(logs):
    def lookup(version):
        raise LookupError(f"no pushed version {version}")

    result = window.check(
        logs, 1100, 1200, drift.load_schema(DEFAULT_SCHEMA), lookup, max_malformed_fraction=0.5
    )
    assert result.errors == ["training statistics of version 3: no pushed version 3"]
    assert result.outcome == outcome.BAD_INPUT and result.validation is not None


def test_training_statistics_and_metadata_are_exclusive(logs, tmp_path, capsys):
    argv = ["window", "--logs", logs, "--start", "1100", "--end", "1200", "--out", str(tmp_path)]
    argv += ["--training-statistics", str(tmp_path / "training"), "--metadata", "x.sqlite"]
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    assert "not both" in capsys.readouterr().err
