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
from ml_metadata.proto import metadata_store_pb2
from taxi_runs import run_pipeline

import lineage
from components.model_selection.artifact import CrossValidationResult, read_result

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOLERANCE = 1e-6
METRICS = ("auc", "binary_accuracy", "calibration", "mean_prediction", "example_count")


def _executed(graph, node, type_name):
    """(execution id, output artifact id) of the executions of ``node`` that ran, oldest
    first (cache hits, which re-link an earlier output, are left out)."""
    ran = []
    for execution in sorted(e for e in graph.executions if graph.node_of(e) == node):
        if graph.executions[execution].last_known_state != metadata_store_pb2.Execution.COMPLETE:
            continue
        [artifact] = graph.linked([execution], graph.outputs, type_name)
        ran.append((execution, artifact))
    return ran


def _first_and_second(graph, node, type_name, since):
    """The output of the shared run's execution and of the one this test's run made."""
    ran = _executed(graph, node, type_name)
    (first_execution, first), *_, (second_execution, second) = ran
    # A new execution (not the shared run's, not a cache hit) made a new artifact:
    # the comparison below is never an artifact compared with itself.
    assert first_execution < since <= second_execution, (node, ran, since)
    assert first != second, (node, ran)
    return graph.artifacts[first], graph.artifacts[second]


def _overall(artifact):
    from reporting import model_analysis

    table = model_analysis.sliced_metrics(model_analysis.load_metrics(artifact.uri), names=METRICS)
    return {m: float(table.loc["Overall", m]) for m in METRICS}


def test_two_no_cache_runs_give_the_same_metrics(taxi_run, tmp_path):
    data_dir, output_dir = str(tmp_path / "data"), str(tmp_path / "out")
    shutil.copytree(taxi_run["data_dir"], data_dir)
    shutil.copytree(taxi_run["output_dir"], output_dir)
    metadata = os.path.join(output_dir, "metadata.sqlite")
    since = max(lineage.Graph.load(lineage.open_store(metadata)).executions) + 1
    result = run_pipeline(output_dir, data_dir, "--no-cache")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    graph = lineage.Graph.load(lineage.open_store(metadata))
    for node in ("Evaluator", "TestEvaluator"):
        first, second = map(_overall, _first_and_second(graph, node, "ModelEvaluation", since))
        for metric in METRICS:
            assert second[metric] == pytest.approx(first[metric], abs=TOLERANCE), (node, metric)
    # Model selection re-ran too: same folds, same per-fold AUCs, same choice.
    first, second = (
        read_result(artifact.uri)
        for artifact in _first_and_second(
            graph, "ModelSelection", CrossValidationResult.TYPE_NAME, since
        )
    )
    assert second["chosen_family"] == first["chosen_family"]
    assert second["fold_sizes"] == first["fold_sizes"]
    for family, info in first["families"].items():
        again = [fold["auc"] for fold in second["families"][family]["folds"]]
        assert again == pytest.approx([fold["auc"] for fold in info["folds"]], abs=TOLERANCE)
