"""``BehavioralChecks`` component: loads the candidate, runs the cases, writes the verdict.

Placed between the Trainer and the Pusher; ``AtomicPusher`` takes its output
as ``behavioral_blessing`` and pushes only when it is blessed.
"""

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model
from tfx.utils import path_utils

from components.behavioral import checks
from components.behavioral.artifact import BLESSED_PROPERTY, BehavioralBlessing, write_report


@component
def BehavioralChecks(
    model: InputArtifact[Model],
    blessing: OutputArtifact[BehavioralBlessing],
    code_fingerprint: Parameter[str] = "",
) -> None:
    """Runs ``checks.default_cases()`` on ``<model.uri>/Format-Serving``.

    ``code_fingerprint`` is not read: it is a digest of the checks' code
    (``pipeline/code_digest.py``), an exec property so that an edit changes
    TFX's cache key.
    """
    del code_fingerprint
    saved_model = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
    report = checks.run_cases(checks.load_predict_fn(saved_model), checks.default_cases())
    write_report(blessing.uri, report)
    blessing.set_int_custom_property(BLESSED_PROPERTY, 1 if report["passed"] else 0)
