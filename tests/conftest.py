"""Shared test set-up: legacy Keras for TF 2.16, quiet logs, one pipeline run.

``taxi_run`` runs the real pipeline once per test session on a small sample
of the bundled data (three spans of 400 rows) and is shared by every
end-to-end test (pipeline, serving, reports).
"""

import itertools
import os
import shutil
import subprocess
import sys

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(REPO_ROOT, "data", "taxi")
SCHEMA_DIR = os.path.join(REPO_ROOT, "data", "schema")
SAMPLE_SPANS = (2013, 2014, 2015)
SAMPLE_ROWS = 400
TRAIN_STEPS = 150


def write_sample(target: str, spans=SAMPLE_SPANS, rows: int = SAMPLE_ROWS) -> str:
    """Copies the first ``rows`` rows of each bundled span to ``target``."""
    for span in spans:
        os.makedirs(os.path.join(target, f"span-{span}"), exist_ok=True)
        with open(os.path.join(DATA_DIR, f"span-{span}", "data.csv")) as f:
            lines = list(itertools.islice(f, rows + 1))
        with open(os.path.join(target, f"span-{span}", "data.csv"), "w") as f:
            f.writelines(lines)
    return target


def run_pipeline(output_dir: str, data_dir: str, *extra: str, timeout: int = 900):
    """Runs ``taxi-pipeline`` in a subprocess; returns the CompletedProcess."""
    command = [
        sys.executable,
        "-m",
        "pipeline.local_runner",
        "--output-dir",
        output_dir,
        "--data-dir",
        data_dir,
        "--train-steps",
        str(TRAIN_STEPS),
        "--eval-steps",
        "5",
        *extra,
    ]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


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
