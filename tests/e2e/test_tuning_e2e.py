"""Tuner in the pipeline, on a copy of the session's ``taxi_run`` (tiny budget)."""

import os
import shutil

import pytest
from ml_metadata.proto import metadata_store_pb2
from taxi_runs import run_pipeline

import lineage
from components import hyperparameters, tuning
from components.model_selection.artifact import CrossValidationResult, read_result

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TUNING = ("--tune-trials", "1", "--tune-steps", "20", "--min-auc", "0.5")


def _states(graph, node):
    return [
        metadata_store_pb2.Execution.State.Name(graph.executions[e].last_known_state)
        for e in sorted(graph.executions)
        if graph.node_of(e) == node
    ]


def test_tuner_feeds_model_selection_and_an_unchanged_tuning_run_is_cached(taxi_run, tmp_path):
    data_dir, output_dir = str(tmp_path / "data"), str(tmp_path / "out")
    shutil.copytree(taxi_run["data_dir"], data_dir)
    shutil.copytree(taxi_run["output_dir"], output_dir)
    metadata = os.path.join(output_dir, "metadata.sqlite")
    # The shared run tuned with the default budget (and other tests may have
    # re-run it through the cache): this test looks at what comes after.
    before = _states(lineage.Graph.load(lineage.open_store(metadata)), "Tuner")
    result = run_pipeline(output_dir, data_dir, *TUNING)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    graph = lineage.Graph.load(lineage.open_store(metadata))
    # This run's budget differs from the shared run's, so it tuned again: the
    # newest Tuner execution is this run's.
    assert _states(graph, "Tuner") == [*before, "COMPLETE"]
    tuner = max(e for e in graph.executions if graph.node_of(e) == "Tuner")
    [best] = graph.linked([tuner], graph.outputs, "HyperParameters")
    values = hyperparameters.read_values(graph.artifacts[best].uri)
    assert values["hidden_units"] in tuning.HIDDEN_UNITS
    # The Tuner's best values are the wide & deep candidate of model selection,
    # whose choice (with its hyperparameters) is what the Trainer gets.
    selections = [e for e in graph.executions if graph.node_of(e) == "ModelSelection"]
    assert best in graph.linked([max(selections)], graph.inputs, "HyperParameters")
    [chosen] = graph.linked([max(selections)], graph.outputs, "HyperParameters")
    [cv_result] = graph.linked([max(selections)], graph.outputs, CrossValidationResult.TYPE_NAME)
    wide_deep = read_result(graph.artifacts[cv_result].uri)["families"]["wide_deep"]["hparams"]
    assert {k: wide_deep[k] for k in values} == values
    trainers = [e for e in graph.executions if graph.node_of(e) == "Trainer"]
    assert graph.linked([max(trainers)], graph.inputs, "HyperParameters") == [chosen]
    assert "tuned (best of the Tuner's trials, the wide & deep candidate" in result.stdout

    # Same data, code and budget, through TFX (--force skips the run-level cache):
    # the Tuner execution is reused, not re-run.
    again = run_pipeline(output_dir, data_dir, *TUNING, "--force")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    graph = lineage.Graph.load(lineage.open_store(metadata))
    assert _states(graph, "Tuner") == [*before, "COMPLETE", "CACHED"]
    assert _states(graph, "ModelSelection")[-1] == "CACHED"
    assert any(line.split()[:2] == ["Tuner", "cached"] for line in again.stdout.splitlines()), (
        again.stdout[-3000:]
    )
