"""``CrossValidationResult``: the evidence behind the model family choice.

This module owns ``cv_result.json``: ``write_result`` (the component) and
``read_result`` (the run summary, the model card, tests) are its only writer
and reader.
"""

import json
import os

from tfx.types.artifact import Artifact
from tfx.utils import io_utils

RESULT_FILE = "cv_result.json"
CHOSEN_FAMILY = "chosen_family"


class CrossValidationResult(Artifact):
    """``<uri>/cv_result.json``: folds, per-fold metrics per family, summaries, rule, decision.

    Custom properties carry the key figures so ML Metadata alone answers "why
    this family": ``chosen_family``, ``reason``, ``rule``, ``folds``, and per
    family ``<family>_auc_mean``, ``<family>_auc_ci_low``, ``<family>_auc_ci_high``.
    """

    TYPE_NAME = "taxi.CrossValidationResult"


def write_result(uri: str, result: dict) -> None:
    """Writes ``result`` (``run_selection``'s) into the artifact at ``uri``."""
    io_utils.write_string_file(os.path.join(uri, RESULT_FILE), json.dumps(result, indent=2))


def read_result(uri: str) -> dict:
    """The ``cv_result.json`` of the artifact at ``uri``.

    Raises:
      OSError: no result file; ValueError: it is not JSON.
    """
    with open(os.path.join(uri, RESULT_FILE)) as f:
        return json.load(f)


def rows_text(result: dict) -> str:
    """How many train rows the cross-validation of ``result`` (cv_result.json) used."""
    rows, total = result["rows"], result.get("split_rows", result["rows"])
    return f"{rows} rows" if rows == total else f"a {rows}-row sample of its {total} rows"
