"""``BehavioralBlessing``: the verdict and JSON report of the behavioral checks."""

from tfx.types.artifact import Artifact

REPORT_FILE = "behavioral_report.json"
BLESSED_PROPERTY = "blessed"


class BehavioralBlessing(Artifact):
    """Custom property ``blessed`` (1/0); ``<uri>/behavioral_report.json`` holds the cases.

    A type of its own (not ``ModelBlessing``) so the Evaluator's blessing stays
    the only ``ModelBlessing`` that lineage and the baseline resolver see.
    """

    TYPE_NAME = "taxi.BehavioralBlessing"
