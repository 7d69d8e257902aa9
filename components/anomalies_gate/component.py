"""TFX component wrapper: fails its execution when anomalies were found.

Placed between ExampleValidator and Transform (Transform is made to depend on
it), so anomalous data never reaches training and nothing gets pushed.
"""

from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies, Examples

from components.anomalies_gate import gate


@component
def AnomaliesGate(
    anomalies: InputArtifact[ExampleAnomalies],
    examples: InputArtifact[Examples],
    code_fingerprint: Parameter[str] = "",
) -> None:
    """Raises ``AnomaliesFoundError`` naming each anomalous split and column.

    ``code_fingerprint`` is not read: it is a digest of this code
    (``pipeline/code_digest.py``), an exec property so that an edit changes
    TFX's cache key.
    """
    del code_fingerprint
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    gate.check(
        gate.read_anomalies(anomalies.uri, splits),
        f"span {examples.get_int_custom_property('span')}",
    )
