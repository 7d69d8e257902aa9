"""`monitor window` / `monitor spans`: outputs, exit codes, bad input."""

import json
import os

from monitoring import artifacts, cli


def _logs(write_log, make_rows, make_log, shift: bool):
    write_log([make_log(make_rows(200, seed=1), 1000)], seq=1)  # previous window
    write_log([make_log(make_rows(200, seed=2, shift=shift), 2000)], seq=2)  # current


def _run(log_prefix, out, *extra):
    return cli.main(
        [
            "window",
            "--logs",
            log_prefix,
            "--start",
            "1500",
            "--end",
            "2500",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_window_with_drift(tmp_path, write_log, log_prefix, make_rows, make_log, capsys):
    _logs(write_log, make_rows, make_log, shift=True)
    textfile = tmp_path / "node" / "taxi_monitor.prom"
    textfile.parent.mkdir()
    assert _run(log_prefix, tmp_path / "out", "--textfile", str(textfile)) == cli.EXIT_FOUND
    directory = tmp_path / "out" / "window-1500-2500"
    anomalies = artifacts.read_anomalies(str(directory / "anomalies"), "serving")
    assert {"fare", "payment_type"} <= set(anomalies.anomaly_info)
    assert (directory / "statistics" / "Split-serving" / "FeatureStats.pb").exists()
    report = (directory / "report.md").read_text()
    assert "| drift | fare | jsd |" in report and "skew against training" in report
    metrics = textfile.read_text()
    assert 'taxi_monitor_feature_distance{feature="fare",kind="drift",measure="jsd"' in metrics
    assert 'taxi_monitor_records{scope="window",status="ok"} 1.0' in metrics
    assert (directory / "metrics.prom").read_text() == metrics
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["rows"] == 200 and summary["previous window rows"] == 200
    assert "drift fare jsd=" in capsys.readouterr().out


def test_window_without_drift(tmp_path, write_log, log_prefix, make_rows, make_log):
    _logs(write_log, make_rows, make_log, shift=False)
    assert _run(log_prefix, tmp_path / "out") == cli.EXIT_OK


def test_missing_window_is_exit_2_with_a_report(
    tmp_path, write_log, log_prefix, make_rows, make_log, capsys
):
    write_log([make_log(make_rows(5), 1000)])
    assert _run(log_prefix, tmp_path / "out") == cli.EXIT_BAD_INPUT
    assert "missing window: no logged requests" in capsys.readouterr().err
    directory = tmp_path / "out" / "window-1500-2500"
    assert "missing window" in (directory / "report.md").read_text()
    assert 'status="outside_window"} 1.0' in (directory / "metrics.prom").read_text()


def test_no_log_files(tmp_path, log_prefix, capsys):
    assert _run(log_prefix, tmp_path / "out") == cli.EXIT_BAD_INPUT
    assert "no request log files match" in capsys.readouterr().err


def test_malformed_records_counted_and_exit_2(
    tmp_path, write_log, log_prefix, make_rows, make_log, capsys
):
    write_log([b"garbage", make_log(make_rows(100), 2000)])
    assert _run(log_prefix, tmp_path / "out") == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "1 of 2 records malformed" in err and "record 0: not a PredictionLog" in err
    summary = json.loads((tmp_path / "out" / "window-1500-2500" / "summary.json").read_text())
    assert summary["counts"]["malformed"] == 1 and summary["rows"] == 100
    assert _run(log_prefix, tmp_path / "out2", "--max-malformed-fraction", "0.5") == cli.EXIT_OK


def test_damaged_log_bytes_are_skipped_and_reported(
    tmp_path, write_log, log_prefix, make_rows, make_log, capsys
):
    records = [make_log(make_rows(10, seed=i), 2000 + i) for i in range(20)]
    path = write_log(records)
    damaged = 16 * 5 + sum(len(r) for r in records[:5]) + 12 + 3  # inside record 5's payload
    with open(path, "r+b") as f:
        f.seek(damaged)
        byte = f.read(1)[0]
        f.seek(damaged)
        f.write(bytes([byte ^ 0x01]))
    assert _run(log_prefix, tmp_path / "out", "--max-malformed-fraction", "0.1") == cli.EXIT_OK
    summary = json.loads((tmp_path / "out" / "window-1500-2500" / "summary.json").read_text())
    assert summary["counts"]["malformed"] == 1 and summary["rows"] == 190
    assert summary["skipped damaged bytes"] == 16 + len(records[5])


def test_bad_arguments(tmp_path, log_prefix, capsys):
    assert (
        cli.main(
            ["window", "--logs", log_prefix, "--start", "10", "--end", "5", "--out", str(tmp_path)]
        )
        == cli.EXIT_BAD_INPUT
    )
    assert cli.parse_time("1970-01-01T00:01:00") == 60.0
    assert cli.parse_time("1970-01-01T01:00:00+01:00") == 0.0


def test_unknown_metadata_is_exit_2(tmp_path, write_log, log_prefix, make_rows, make_log, capsys):
    _logs(write_log, make_rows, make_log, shift=False)
    missing = str(tmp_path / "nope.sqlite")
    assert _run(log_prefix, tmp_path / "out", "--metadata", missing) == cli.EXIT_BAD_INPUT
    assert "metadata not found" in capsys.readouterr().err
    assert cli.main(["spans", "--metadata", missing, "--out", str(tmp_path)]) == 2
    assert not os.path.exists(missing)


def test_every_flag_is_a_parameter_of_its_commands_function():
    """The dispatch passes flags by name: a flag without a parameter would be dropped."""
    import argparse
    import inspect

    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(sub.choices) == 13
    for name, command in sub.choices.items():
        function = command.get_default("func").function
        flags = {a.dest for a in command._actions if a.dest != "help"}
        parameters = inspect.signature(function).parameters
        assert flags == set(parameters), name
        required = {p for p, v in parameters.items() if v.default is inspect.Parameter.empty}
        given = {a.dest for a in command._actions if a.required or a.default is not None}
        assert required <= given, name
