"""`monitor-pipeline`: bad input is a message and exit 2, before any TFX run."""

from monitoring import cli


def test_bad_input(tmp_path, capsys, write_log, make_rows, make_log, log_prefix, fake_store):
    window = ["--start", "1000", "--end", "1100"]
    none = str(tmp_path / "none.sqlite")
    assert cli.main(["monitor-pipeline", "--logs", log_prefix, *window, "--metadata", none]) == 2
    assert "metadata not found" in capsys.readouterr().err
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [7])
    write_log([make_log(make_rows(3), 5000, 7, "r1"), b"garbage"])
    argv = ["monitor-pipeline", "--logs", log_prefix, "--metadata", metadata]
    assert cli.main([*argv, *window]) == 2
    err = capsys.readouterr().err
    assert "missing window: no logged requests in [1000.0, 1100.0)" in err
    assert "1 malformed" in err and "record 1: not a PredictionLog" in err
    assert cli.main([*argv, "--start", "5000", "--end", "5100"]) == 2
    assert "training statistics of version 7" in capsys.readouterr().err
    assert cli.main([*argv, "--start", "5100", "--end", "5000"]) == 2
    assert "must be after --start" in capsys.readouterr().err
