"""Helpers to build sample data and run the pipeline from tests (not a test module)."""

import itertools
import os
import subprocess
import sys

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


def pipeline_command(output_dir: str, data_dir: str, *extra: str) -> list[str]:
    """The ``taxi-pipeline`` command line of ``run_pipeline`` (run it from ``REPO_ROOT``)."""
    return [
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


def run_pipeline(output_dir: str, data_dir: str, *extra: str, timeout: int = 900):
    """Runs ``taxi-pipeline`` in a subprocess; returns the CompletedProcess."""
    return subprocess.run(
        pipeline_command(output_dir, data_dir, *extra),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shared_run(root: str) -> dict:
    """The session's shared run, made in ``root``: a run on the sample, then ``--force``.

    The forced re-run changes nothing (every component a TFX cache hit): it is
    part of the shared state, so tests read a store with cached executions in
    it, as a real one has, whatever order they run in.
    """
    data_dir = write_sample(os.path.join(root, "data"))
    output_dir = os.path.join(root, "out")
    outputs = {}
    for name, extra in (("stdout", ()), ("forced_stdout", ("--force",))):
        result = run_pipeline(output_dir, data_dir, *extra)
        if result.returncode != 0:
            raise RuntimeError(result.stdout[-3000:] + result.stderr[-5000:])
        outputs[name] = result.stdout
        with open(os.path.join(root, f"{name}.txt"), "w") as f:
            f.write(result.stdout)
    return {"root": root, "data_dir": data_dir, "output_dir": output_dir, **outputs}


if __name__ == "__main__":
    # python tests/taxi_runs.py DIR: the shared run kept in DIR, for TAXI_TEST_RUN=DIR.
    shared_run(sys.argv[1])
