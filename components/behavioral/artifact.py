"""``BehavioralBlessing``: the verdict and JSON report of the behavioral checks.

This module owns the report file: ``write_report`` (the component) and
``read_report`` (the run summary, the model card) are its only writer and reader.
"""

import json
import os

from tfx.types.artifact import Artifact
from tfx.utils import io_utils

REPORT_FILE = "behavioral_report.json"
BLESSED_PROPERTY = "blessed"


class BehavioralBlessing(Artifact):
    """Custom property ``blessed`` (1/0); ``<uri>/behavioral_report.json`` holds the cases.

    A type of its own (not ``ModelBlessing``) so the Evaluator's blessing stays
    the only ``ModelBlessing`` that lineage and the baseline resolver see.
    """

    TYPE_NAME = "taxi.BehavioralBlessing"


def write_report(uri: str, report: dict) -> None:
    """Writes ``report`` (``checks.run_cases``' result) into the blessing at ``uri``."""
    io_utils.write_string_file(os.path.join(uri, REPORT_FILE), json.dumps(report, indent=2))


def read_report(uri: str) -> dict:
    """The report in the blessing at ``uri`` (``passed``, ``failed``, ``cases``).

    Raises:
      OSError: no report file; ValueError: it is not JSON.
    """
    with open(os.path.join(uri, REPORT_FILE)) as f:
        return json.load(f)
