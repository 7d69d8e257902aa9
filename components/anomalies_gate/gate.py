"""Plain functions behind the anomalies gate: read, describe, decide."""

from __future__ import annotations

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2

ANOMALIES_FILE = "SchemaDiff.pb"


class AnomaliesFoundError(RuntimeError):
    """The validated data does not match the schema; the run must stop."""


def read_anomalies(uri: str, split_names: list[str]) -> dict[str, anomalies_pb2.Anomalies]:
    """Loads ExampleValidator's per-split ``SchemaDiff.pb`` under ``uri``."""
    result = {}
    for split in split_names:
        path = os.path.join(uri, f"Split-{split}", ANOMALIES_FILE)
        anomalies = anomalies_pb2.Anomalies()
        with open(path, "rb") as f:
            anomalies.ParseFromString(f.read())
        result[split] = anomalies
    return result


def describe(by_split: dict[str, anomalies_pb2.Anomalies], source: str = "") -> list[str]:
    """One line per anomaly: split, column, short and long description."""
    lines = []
    where = f" in {source}" if source else ""
    for split, anomalies in sorted(by_split.items()):
        for column, info in sorted(anomalies.anomaly_info.items()):
            reasons = (
                "; ".join(f"{r.short_description}: {r.description}" for r in info.reason)
                or info.description
            )
            lines.append(f"split '{split}'{where}, column '{column}': {reasons}")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            reasons = "; ".join(r.description for r in info.reason) or info.description
            lines.append(f"split '{split}'{where}, whole dataset: {reasons}")
    return lines


def check(by_split: dict[str, anomalies_pb2.Anomalies], source: str = "") -> None:
    """Raises ``AnomaliesFoundError`` listing every anomaly, if there is any."""
    lines = describe(by_split, source)
    if lines:
        raise AnomaliesFoundError(
            f"{len(lines)} data anomal{'y' if len(lines) == 1 else 'ies'} against the "
            "curated schema; the run stops before Transform:\n  - " + "\n  - ".join(lines)
        )
