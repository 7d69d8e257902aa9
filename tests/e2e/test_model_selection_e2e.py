"""ModelSelection in the default pipeline, on the session's shared ``taxi_run``.

No pipeline run of its own: the default run has ``--cv-folds 3``.
"""

import os

import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

import lineage
from components import model as taxi_model
from components.model_selection.artifact import CHOSEN_FAMILY, CrossValidationResult, read_result
from reporting import model_card

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def selection(taxi_run):
    graph = lineage.Graph.load(lineage.open_store(taxi_run["metadata"]))
    # The one that ran: re-runs of the shared run (test_pipeline_e2e) add CACHED ones.
    [execution] = [
        e
        for e, info in graph.executions.items()
        if graph.node_of(e) == "ModelSelection"
        and info.last_known_state == metadata_store_pb2.Execution.COMPLETE
    ]
    [result] = graph.linked([execution], graph.outputs, CrossValidationResult.TYPE_NAME)
    [hparams] = graph.linked([execution], graph.outputs, "HyperParameters")
    outcome = read_result(graph.artifacts[result].uri)
    return {
        "graph": graph,
        "execution": execution,
        "result": graph.artifacts[result],
        "hparams_id": hparams,
        "hparams": graph.artifacts[hparams],
        "outcome": outcome,
    }


def test_cross_validation_result_has_k_folds_per_family_on_train_only(selection):
    outcome, graph = selection["outcome"], selection["graph"]
    assert outcome["folds"] == 3 and outcome["split"] == "train"
    assert set(outcome["families"]) == set(taxi_model.MODEL_FAMILIES)
    for info in outcome["families"].values():
        assert len(info["folds"]) == 3
        assert {"auc", "log_loss", "calibration", "accuracy"} <= set(info["folds"][0])
        auc = info["summary"]["auc"]
        assert auc["ci_low"] <= auc["mean"] <= auc["ci_high"]
    # Exactly the train rows of the trained spans: never eval or test.
    examples = graph.linked([selection["execution"]], graph.inputs, "Examples")
    train_files = [
        os.path.join(graph.artifacts[a].uri, "Split-train", name)
        for a in examples
        for name in os.listdir(os.path.join(graph.artifacts[a].uri, "Split-train"))
    ]
    rows = sum(1 for _ in tf.data.TFRecordDataset(train_files, compression_type="GZIP"))
    assert outcome["rows"] == rows == sum(outcome["fold_sizes"])
    assert len(examples) == 3  # the three sample spans


def test_mlmd_alone_says_which_family_and_why(selection):
    result, hparams, outcome = selection["result"], selection["hparams"], selection["outcome"]
    chosen = lineage.prop(result, CHOSEN_FAMILY)
    assert chosen in taxi_model.MODEL_FAMILIES and chosen == outcome["chosen_family"]
    assert lineage.prop(hparams, CHOSEN_FAMILY) == chosen
    assert lineage.prop(result, "reason") == outcome["reason"] and lineage.prop(result, "rule")
    for family in taxi_model.MODEL_FAMILIES:
        assert lineage.prop(result, f"{family}_auc_mean") == pytest.approx(
            outcome["families"][family]["summary"]["auc"]["mean"]
        )
        assert lineage.prop(result, f"{family}_auc_ci_low") <= lineage.prop(
            result, f"{family}_auc_mean"
        )


def test_trainer_trained_the_chosen_family(selection, taxi_run):
    graph = selection["graph"]
    trainers = [e for e in graph.executions if graph.node_of(e) == "Trainer"]
    assert selection["hparams_id"] in graph.linked(trainers, graph.inputs, "HyperParameters")
    [version] = os.listdir(taxi_run["serving_dir"])
    served = tf.saved_model.load(os.path.join(taxi_run["serving_dir"], version))
    names = {v.name for v in served.weights}
    has_embedding = any("embedding" in n for n in names)
    chosen = selection["outcome"]["chosen_family"]
    assert has_embedding == (chosen == taxi_model.WIDE_DEEP), (chosen, sorted(names))


def test_summary_and_model_card_show_the_evidence(selection, taxi_run):
    outcome = selection["outcome"]
    stdout = taxi_run["stdout"]
    assert f"model selection (3-fold CV on the train split, {outcome['rows']} rows" in stdout
    assert f"chose {outcome['chosen_family']}" in stdout
    for family in taxi_model.MODEL_FAMILIES:
        assert f"    {family:<10} AUC " in stdout
    assert f"    why: {outcome['reason']}" in stdout
    card = model_card.build_card(taxi_run["output_dir"])
    assert card["selection"]["chosen_family"] == outcome["chosen_family"]
    assert "## Model selection (cross-validation)" in model_card.render_markdown(card)
