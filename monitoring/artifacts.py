"""Reads and writes statistics and anomalies in TFX's artifact layouts.

* anomalies: `<dir>/Split-<split>/SchemaDiff.pb` (a binary TFDV `Anomalies`,
  as ExampleValidator writes ExampleAnomalies in TFX 1.16);
* statistics: `<dir>/Split-<split>/FeatureStats.pb` (as StatisticsGen writes).
"""

from __future__ import annotations

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

ANOMALIES_FILE = "SchemaDiff.pb"
STATS_FILE = "FeatureStats.pb"


def _write(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def write_anomalies(directory: str, split: str, anomalies: anomalies_pb2.Anomalies) -> str:
    """Writes `anomalies`; returns the file path."""
    path = os.path.join(directory, f"Split-{split}", ANOMALIES_FILE)
    return _write(path, anomalies.SerializeToString())


def read_anomalies(directory: str, split: str) -> anomalies_pb2.Anomalies:
    """The anomalies of one split written by ExampleValidator (or `write_anomalies`)."""
    with open(os.path.join(directory, f"Split-{split}", ANOMALIES_FILE), "rb") as f:
        return anomalies_pb2.Anomalies.FromString(f.read())


def read_statistics(directory: str, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """The statistics of one split written by StatisticsGen (or `write_statistics`)."""
    with open(os.path.join(directory, f"Split-{split}", STATS_FILE), "rb") as f:
        return statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())


def load_split_statistics(artifact, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """The statistics of one split of an ExampleStatistics artifact (MLMD or TFX)."""
    return read_statistics(artifact.uri, split)


def write_statistics(
    directory: str, split: str, stats: statistics_pb2.DatasetFeatureStatisticsList
) -> str:
    """Writes `stats`; returns the file path."""
    path = os.path.join(directory, f"Split-{split}", STATS_FILE)
    return _write(path, stats.SerializeToString())
