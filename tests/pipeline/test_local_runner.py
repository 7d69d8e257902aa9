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


def test_our_flags_are_hidden_from_the_absl_parse_tfx_runs(monkeypatch):
    """TFX's Beam executors run ``flags.FLAGS(sys.argv + beam_args, known_only=True)``:
    ``taxi-pipeline -v`` made absl read the first Beam arg as ``--verbosity``'s value."""
    import sys

    from absl import flags

    from pipeline import configs

    monkeypatch.setattr("sys.argv", ["taxi-pipeline", "--train-steps", "5", "-v"])
    parse = flags.FlagValues()
    flags.DEFINE_integer("verbosity", -1, "as absl's", flag_values=parse, short_name="v")
    with local_runner._own_flags_hidden():
        parse(sys.argv + list(configs.BEAM_ARGS_IN_MEMORY), known_only=True)
        assert sys.argv == ["taxi-pipeline"]
    assert parse.verbosity == -1
    assert sys.argv == ["taxi-pipeline", "--train-steps", "5", "-v"]
