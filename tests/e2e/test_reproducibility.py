"""Same data, config and seed -> the same metrics: a second ``--no-cache`` run.

The second run re-executes every component (ExampleGen, Transform's
analyzers, the Trainer, both Evaluators) on a copy of the session's
``taxi_run`` data; the candidate's metrics on the eval and test splits must
match the first run's within ``TOLERANCE``.

Tolerance: 1e-6 absolute. The Trainer seeds TF, Keras and the input shuffle
(``tf.keras.utils.set_random_seed`` + ``shuffle_seed``) and the data and
splits are deterministic, so the runs are expected to agree to float32
rounding; 1e-6 leaves room for the order of float reductions on a
multi-threaded CPU while still catching any real seed leak (an unseeded
shuffle or initialiser moves AUC by 1e-3 or more on this sample).
"""

import os
import shutil

import pytest
from taxi_runs import run_pipeline

from components.model_selection.artifact import CrossValidationResult
from pipeline import lineage

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOLERANCE = 1e-6
METRICS = ("auc", "binary_accuracy", "calibration", "mean_prediction", "example_count")


def _overall(metadata, node):
    """Overall candidate metrics of each execution of ``node``, oldest first."""
    from reporting import model_analysis

    graph = lineage.Graph.load(lineage.open_store(metadata))
    executions = sorted(e for e in graph.executions if graph.node_of(e) == node)
    results = []
    for execution in executions:
        for a in graph.linked([execution], graph.outputs, "ModelEvaluation"):
            table = model_analysis.sliced_metrics(
                model_analysis.load_metrics(graph.artifacts[a].uri), names=METRICS
            )
            results.append({m: float(table.loc["Overall", m]) for m in METRICS})
    return results


def test_two_no_cache_runs_give_the_same_metrics(taxi_run, tmp_path):
    data_dir, output_dir = str(tmp_path / "data"), str(tmp_path / "out")
    shutil.copytree(taxi_run["data_dir"], data_dir)
    shutil.copytree(taxi_run["output_dir"], output_dir)
    result = run_pipeline(output_dir, data_dir, "--no-cache")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metadata = os.path.join(output_dir, "metadata.sqlite")
    for node in ("Evaluator", "TestEvaluator"):
        first, *_, second = _overall(metadata, node)
        for metric in METRICS:
            assert second[metric] == pytest.approx(first[metric], abs=TOLERANCE), (node, metric)
    # Model selection re-ran too: same folds, same per-fold AUCs, same choice.
    import json

    from components.model_selection.artifact import RESULT_FILE

    graph = lineage.Graph.load(lineage.open_store(metadata))
    outcomes = []
    for execution in sorted(e for e in graph.executions if graph.node_of(e) == "ModelSelection"):
        for a in graph.linked([execution], graph.outputs, CrossValidationResult.TYPE_NAME):
            with open(os.path.join(graph.artifacts[a].uri, RESULT_FILE)) as f:
                outcomes.append(json.load(f))
    first, *_, second = outcomes
    assert second["chosen_family"] == first["chosen_family"]
    assert second["fold_sizes"] == first["fold_sizes"]
    for family, info in first["families"].items():
        again = [fold["auc"] for fold in second["families"][family]["folds"]]
        assert again == pytest.approx([fold["auc"] for fold in info["folds"]], abs=TOLERANCE)
