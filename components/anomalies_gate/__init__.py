"""Stops a pipeline run when ExampleValidator found anomalies."""

from components.anomalies_gate.component import AnomaliesGate
from components.anomalies_gate.gate import AnomaliesFoundError, describe, read_anomalies

__all__ = ["AnomaliesFoundError", "AnomaliesGate", "describe", "read_anomalies"]
