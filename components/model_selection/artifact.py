"""``CrossValidationResult``: the evidence behind the model family choice."""

from tfx.types.artifact import Artifact

RESULT_FILE = "cv_result.json"
HPARAMS_FILE = "best_hyperparameters.txt"  # the name the Tuner writes; the Trainer reads any
CHOSEN_FAMILY = "chosen_family"


class CrossValidationResult(Artifact):
    """``<uri>/cv_result.json``: folds, per-fold metrics per family, summaries, rule, decision.

    Custom properties carry the key figures so ML Metadata alone answers "why
    this family": ``chosen_family``, ``reason``, ``rule``, ``folds``, and per
    family ``<family>_auc_mean``, ``<family>_auc_ci_low``, ``<family>_auc_ci_high``.
    """

    TYPE_NAME = "taxi.CrossValidationResult"


def rows_text(result: dict) -> str:
    """How many train rows the cross-validation of ``result`` (cv_result.json) used."""
    rows, total = result["rows"], result.get("split_rows", result["rows"])
    return f"{rows} rows" if rows == total else f"a {rows}-row sample of its {total} rows"
