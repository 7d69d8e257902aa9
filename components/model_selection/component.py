"""``ModelSelection`` component: k-fold cross-validation of the model families.

Reads the train split only (eval gates the blessing, test is held out),
streamed once; a seeded, order-independent sample of at most ``max_rows``
of its rows (all of them on the bundled data) goes through the Transform
graph into memory; ``cv.cross_validate`` trains
every family of ``components.model.MODEL_FAMILIES`` on the same folds and
``cv.select_family`` applies the rule (``cv.RULE``). Outputs:

* ``result`` (``CrossValidationResult``): ``cv_result.json`` and the key
  figures as custom properties;
* ``best_hyperparameters`` (``HyperParameters``, the type the Tuner emits):
  ``{"values": {"model_family": ..., <hyperparameters>}}``, which the Trainer
  takes as ``hyperparameters``.

With a Tuner upstream, its best values are the wide & deep candidate's
hyperparameters (and what the Trainer gets if wide & deep is chosen).
"""

import math
import os
import time

from tfx.dsl.component.experimental.annotations import (
    InputArtifact,
    OutputArtifact,
    Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import Examples, HyperParameters, TransformGraph

from components import hyperparameters as hyperparameters_file
from components.model_selection.artifact import CHOSEN_FAMILY, CrossValidationResult, write_result
from components.spans import by_span

TRAIN_SPLIT = "train"


def run_selection(
    train_patterns: list[str],
    transform_graph_uri: str,
    folds: int,
    steps: int,
    seed: int,
    min_auc_gain: float,
    confidence: float,
    tuned: dict | None = None,
    epochs: float = 0.0,
    max_rows: int = 60_000,
) -> dict:
    """The whole selection as a plain function: sample, fold, cross-validate, decide.

    Each fold trains ``budget_steps`` steps: ``steps`` at least, and
    ``epochs`` passes over the other folds' rows.

    Returns:
      The JSON-able result (what ``cv_result.json`` holds).
    """
    import tensorflow_transform as tft

    from components import model as taxi_model
    from components.model_selection import cv

    started = time.time()
    families = list(taxi_model.MODEL_FAMILIES)
    candidates = {
        family: taxi_model.family_hparams(family, tuned if family == taxi_model.WIDE_DEEP else None)
        for family in families
    }
    transform_output = tft.TFTransformOutput(transform_graph_uri)
    records, x, labels, split_rows = cv.load_transformed(
        taxi_model.input_files(train_patterns), transform_output, max_rows, seed
    )
    loaded = time.time()
    fold_ids = cv.assign_folds(records, folds, seed, labels=labels.astype(int).tolist())
    batch_size = int(taxi_model.DEFAULT_HPARAMS["batch_size"])
    fit_rows = len(records) - math.ceil(len(records) / folds)
    steps = taxi_model.budget_steps(fit_rows, epochs, batch_size, steps)
    per_fold = cv.cross_validate(x, labels, fold_ids, candidates, steps, seed)
    auc_by_family = {f: [m["auc"] for m in per_fold[f]] for f in families}
    chosen, reason, comparisons = cv.select_family(
        auc_by_family, families, min_auc_gain, confidence
    )
    return {
        "split": TRAIN_SPLIT,
        "rows": len(records),
        "split_rows": split_rows,
        "max_rows": max_rows,
        "folds": folds,
        "fold_sizes": [int((fold_ids == k).sum()) for k in range(folds)],
        "steps": steps,
        "epochs": epochs,
        "seed": seed,
        "families": {
            family: {
                "hparams": candidates[family],
                "folds": per_fold[family],
                "summary": {
                    metric: cv.summarize([m[metric] for m in per_fold[family]], confidence)
                    for metric in cv.METRICS
                },
            }
            for family in families
        },
        "comparisons": comparisons,
        "confidence": confidence,
        "min_auc_gain": min_auc_gain,
        "rule": cv.rule_text(families, min_auc_gain, confidence),
        "chosen_family": chosen,
        "reason": reason,
        "hyperparameters": candidates[chosen],
        "seconds": {"load": round(loaded - started, 3), "total": round(time.time() - started, 3)},
    }


def record(result: dict, artifact) -> None:
    """The key figures of ``result`` as custom properties of ``artifact``."""
    artifact.set_string_custom_property(CHOSEN_FAMILY, result["chosen_family"])
    artifact.set_string_custom_property("reason", result["reason"])
    artifact.set_string_custom_property("rule", result["rule"])
    artifact.set_int_custom_property("folds", int(result["folds"]))
    for family, info in result["families"].items():
        auc = info["summary"]["auc"]
        artifact.set_float_custom_property(f"{family}_auc_mean", float(auc["mean"]))
        artifact.set_float_custom_property(f"{family}_auc_ci_low", float(auc["ci_low"]))
        artifact.set_float_custom_property(f"{family}_auc_ci_high", float(auc["ci_high"]))


@component
def ModelSelection(
    examples: InputArtifact[list[Examples]],
    transform_graph: InputArtifact[TransformGraph],
    result: OutputArtifact[CrossValidationResult],
    best_hyperparameters: OutputArtifact[HyperParameters],
    hyperparameters: InputArtifact[HyperParameters] = None,
    folds: Parameter[int] = 3,
    steps: Parameter[int] = 150,
    seed: Parameter[int] = 42,
    min_auc_gain: Parameter[float] = 0.0,
    confidence: Parameter[float] = 0.95,
    epochs: Parameter[float] = 0.0,
    max_rows: Parameter[int] = 60_000,
    code_fingerprint: Parameter[str] = "",
) -> None:
    """k-fold CV of the model families on the train split; the choice feeds the Trainer.

    ``code_fingerprint`` is not read: it is a digest of the selection and
    model code, so a code change invalidates the cached execution.
    """
    del code_fingerprint
    patterns = [
        os.path.join(artifact_utils.get_split_uri([e], TRAIN_SPLIT), "*") for e in by_span(examples)
    ]
    outcome = run_selection(
        patterns,
        transform_graph.uri,
        folds,
        steps,
        seed,
        min_auc_gain,
        confidence,
        tuned=hyperparameters_file.read_values(hyperparameters.uri) if hyperparameters else {},
        epochs=epochs,
        max_rows=max_rows,
    )
    write_result(result.uri, outcome)
    hyperparameters_file.write_values(best_hyperparameters.uri, outcome["hyperparameters"])
    record(outcome, result)
    record(outcome, best_hyperparameters)
