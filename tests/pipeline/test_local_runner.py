"""taxi-pipeline's start-up: what it refuses before running anything."""

import importlib.metadata

from core import compat
from pipeline import local_runner


def test_a_library_at_another_version_stops_the_run_before_it_starts(tmp_path, monkeypatch, capsys):
    real = importlib.metadata.version
    monkeypatch.setattr(
        compat.importlib.metadata,
        "version",
        lambda name: "2.61.0" if name == "apache-beam" else real(name),
    )
    monkeypatch.setattr(compat, "_checked", set())
    output = tmp_path / "out"
    assert local_runner.main(["-v", "--output-dir", str(output)]) == local_runner.EXIT_FAILED
    err = capsys.readouterr().err
    assert "ERROR: apache-beam 2.61.0 is installed" in err and "apache-beam==2.59.0" in err
    assert not output.exists()  # nothing was written
