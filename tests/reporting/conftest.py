"""Fixtures for the reporting tests.

One real pipeline run per session (``pipeline_runs``): the bundled spans with
``--train-steps 50``, then an anomalous span 2017 (a payment type outside the
schema's domain and ``trip_start_hour = 30``) run against the same output dir,
which stops at the AnomaliesGate. Tests that need it are marked ``e2e`` and
``slow``; deselect them with ``-m "not e2e"``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from reporting_support import REPO_ROOT, write_anomalous_span  # noqa: E402


def pytest_configure(config):
    for marker, text in (
        ("e2e", "needs a real pipeline run (session fixture, a few minutes)"),
        ("slow", "takes more than a few seconds"),
    ):
        config.addinivalue_line("markers", f"{marker}: {text}")


@dataclasses.dataclass
class PipelineRuns:
    run_dir: str
    good_run_id: str  # the full (ingest, train, evaluate, push) run
    bad_run_id: str  # the anomalous span-2017 run, stopped at AnomaliesGate
    serving_dir: str


def _env() -> dict:
    env = dict(os.environ)
    env["TF_USE_LEGACY_KERAS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    return env


def _run_pipeline(args: list[str], cwd: str, expected: int) -> None:
    command = [sys.executable, "-m", "pipeline.local_runner", *args]
    result = subprocess.run(
        command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900
    )
    if result.returncode != expected:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}, expected {expected}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )


@pytest.fixture(scope="session")
def pipeline_runs(tmp_path_factory) -> PipelineRuns:
    from lineage import runs as runs_lib

    root = tmp_path_factory.mktemp("reporting_e2e")
    run_dir = str(root / "run")
    good_data = os.path.join(REPO_ROOT, "data", "taxi")
    common = ["--output-dir", run_dir, "--train-steps", "50", "--min-auc", "0.5"]
    _run_pipeline([*common, "--data-dir", good_data], cwd=str(root), expected=0)
    good_run_id = runs_lib.RunStore(run_dir).get_run(require="Evaluator").run_id

    bad_data = str(root / "bad_data")
    shutil.copytree(good_data, bad_data)
    newest = sorted(d for d in os.listdir(good_data) if d.startswith("span-"))[-1]
    write_anomalous_span(
        os.path.join(good_data, newest, "data.csv"), os.path.join(bad_data, "span-2017", "data.csv")
    )
    _run_pipeline([*common, "--data-dir", bad_data], cwd=str(root), expected=2)
    bad_run_id = runs_lib.RunStore(run_dir).get_run().run_id
    assert bad_run_id != good_run_id
    return PipelineRuns(run_dir, good_run_id, bad_run_id, os.path.join(run_dir, "serving", "taxi"))
