"""Tuner in the pipeline, on a copy of the session's ``taxi_run`` (tiny budget)."""

import json
import os
import shutil

import pytest
from taxi_runs import run_pipeline

from components import tuning
from pipeline import lineage

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_tuner_feeds_best_hyperparameters_to_the_trainer(taxi_run, tmp_path):
    data_dir, output_dir = str(tmp_path / "data"), str(tmp_path / "out")
    shutil.copytree(taxi_run["data_dir"], data_dir)
    shutil.copytree(taxi_run["output_dir"], output_dir)
    result = run_pipeline(
        output_dir, data_dir, "--tune-trials", "2", "--tune-steps", "20", "--min-auc", "0.5"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    graph = lineage.Graph.load(lineage.open_store(os.path.join(output_dir, "metadata.sqlite")))
    [tuner] = [e for e in graph.executions if graph.node_of(e) == "Tuner"]
    [best] = graph.linked([tuner], graph.outputs, "HyperParameters")
    trainers = [e for e in graph.executions if graph.node_of(e) == "Trainer"]
    assert best in graph.linked([max(trainers)], graph.inputs, "HyperParameters")
    with open(os.path.join(graph.artifacts[best].uri, "best_hyperparameters.txt")) as f:
        values = json.load(f)["values"]
    assert values["hidden_units"] in tuning.HIDDEN_UNITS
    assert "tuned (best of the Tuner's trials, fed to the Trainer)" in result.stdout
