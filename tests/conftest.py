"""Shared test set-up: legacy Keras for TF 2.16, quiet logs, one pipeline run.

``taxi_run`` runs the real pipeline once per test session on a small sample
of the bundled data (three spans of 400 rows) and is shared by every
end-to-end test (pipeline, serving, reports).
"""

import os
import shutil

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from taxi_runs import run_pipeline, write_sample  # noqa: E402


@pytest.fixture(scope="session")
def taxi_run(tmp_path_factory):
    """A finished pipeline run on the sample: paths and the runner's output."""
    root = tmp_path_factory.mktemp("taxi_run")
    data_dir = write_sample(str(root / "data"))
    output_dir = str(root / "out")
    result = run_pipeline(output_dir, data_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {
        "root": str(root),
        "data_dir": data_dir,
        "output_dir": output_dir,
        "metadata": os.path.join(output_dir, "metadata.sqlite"),
        "serving_dir": os.path.join(output_dir, "serving", "taxi"),
        "stdout": result.stdout,
    }


@pytest.fixture
def copy_of(tmp_path):
    """Copies a directory into this test's tmp dir (runs must not share state)."""

    def copy(source: str, name: str) -> str:
        target = str(tmp_path / name)
        shutil.copytree(source, target)
        return target

    return copy


@pytest.fixture(scope="session")
def mariadb():
    """A MariaDB server for the session (tests/mariadb_server.py); each test uses its own
    database (`mariadb.url()`). Skipped where MariaDB is not installed."""
    from mariadb_server import MariaDB, binaries

    if binaries() is None:
        pytest.skip("MariaDB is not installed (scripts/setup.sh --browser installs it)")
    server = MariaDB().start()
    yield server
    server.stop()
