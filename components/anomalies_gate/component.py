"""TFX component wrapper: fails its execution when anomalies were found.

Placed between ExampleValidator and Transform (Transform is made to depend on
it), so anomalous data never reaches training and nothing gets pushed.
"""


from tfx import v1 as tfx
from tfx.types import artifact_utils

from components.anomalies_gate import gate


@tfx.dsl.components.component
def AnomaliesGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
) -> None:
    """Raises ``AnomaliesFoundError`` naming each anomalous split and column."""
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    gate.check(gate.read_anomalies(anomalies.uri, splits), f"span {examples.get_int_custom_property('span')}")
