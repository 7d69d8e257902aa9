"""`RequestLogMonitor`: a request-log window checked inside a TFX pipeline.

A thin wrapper over monitoring/ (the same functions as `taxi-monitor window`),
so monitoring results are artifacts in ML Metadata with lineage:

* inputs: `schema` (Schema, the curated one via ImportSchemaGen) and
  `training_statistics` (ExampleStatistics of the served model's training
  data, e.g. StatisticsGen's artifact re-used through an Importer);
* exec properties: `log_prefix` (the server's request-log `filename_prefix` or
  directory), `start`, `end` (unix seconds, window `[start, end)`),
  `training_split` ("train"), `linf`/`jsd` (floors of the thresholds of
  features without a comparator in the schema; the thresholds follow the
  window's size, see monitoring/drift_thresholds.py), `max_malformed_fraction` (0);
* outputs, in StatisticsGen's / ExampleValidator's layout (split `serving`):
  `statistics` (`Split-serving/FeatureStats.pb`) and `anomalies`
  (`Split-serving/SchemaDiff.pb`: schema anomalies, skew against the training
  statistics, drift against the window of the same length just before).

Custom properties on `anomalies`: `rows`, `records`, `malformed_records`,
`outside_window`, `skew_features`, `drift_features`, `anomalous_features`
(comma separated), `previous_window_rows`.

Bad input fails the execution (recorded FAILED in MLMD) with a clear message:
no log files, no logged request in the window, too many malformed records.
"""

# No `from __future__ import annotations`: the @component decorator reads real types.

import json

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies, ExampleStatistics, Schema

SPLIT = "serving"


class MonitoringInputError(ValueError):
    """The request-log window cannot be monitored (no files, empty, malformed)."""


def monitor_window(
    log_prefix: str,
    start: float,
    end: float,
    schema_uri: str,
    training_statistics_uri: str,
    statistics_uri: str,
    anomalies_uri: str,
    training_split: str = "train",
    linf: float = 0.1,
    jsd: float = 0.1,
    max_malformed_fraction: float = 0.0,
) -> dict:
    """Writes the window's statistics and anomalies; returns the facts (custom properties)."""
    import os

    import tensorflow_data_validation as tfdv

    from monitoring import artifacts, drift, drift_thresholds, request_logs

    if end <= start:
        raise MonitoringInputError(f"end ({end}) must be after start ({start})")
    window = request_logs.read_window(log_prefix, start, end)
    total = window.records + window.outside + window.malformed
    if not window.files:
        raise MonitoringInputError(f"no request log files match {log_prefix!r}")
    if total and window.malformed / total > max_malformed_fraction:
        raise MonitoringInputError(
            f"{window.malformed} of {total} request-log records malformed (allowed fraction "
            f"{max_malformed_fraction}): {window.problems[:3]}"
        )
    if not window.rows:
        raise MonitoringInputError(
            f"missing window: no logged requests in [{start}, {end}) ({total} records read, "
            f"{window.outside} outside the window)"
        )
    before = request_logs.read_window(log_prefix, start - (end - start), start)
    schema = drift_thresholds.window_comparator_schema(
        tfdv.load_schema_text(os.path.join(schema_uri, "schema.pbtxt")),
        len(window.rows),
        len(before.rows),
        linf,
        jsd,
    )
    training = tfdv.load_stats_binary(
        os.path.join(training_statistics_uri, f"Split-{training_split}", artifacts.STATS_FILE)
    )
    current = drift.statistics_from_rows(window.rows, schema)
    previous = drift.statistics_from_rows(before.rows, schema) if before.rows else None
    validation = drift.validate(current, schema, training=training, previous=previous)
    artifacts.write_statistics(statistics_uri, SPLIT, current)
    artifacts.write_anomalies(anomalies_uri, SPLIT, validation.anomalies)
    exceeded = [f for f in validation.findings if f.exceeded]
    return {
        "rows": len(window.rows),
        "records": window.records,
        "malformed_records": window.malformed,
        "outside_window": window.outside,
        "previous_window_rows": len(before.rows),
        "skew_features": len({f.feature for f in exceeded if f.kind == "skew"}),
        "drift_features": len({f.feature for f in exceeded if f.kind == "drift"}),
        "anomalous_features": ",".join(validation.anomalous_features),
        "findings": json.dumps(
            [
                {"kind": f.kind, "feature": f.feature, "measure": f.measure, "value": f.value}
                for f in exceeded
            ]
        ),
    }


@component
def RequestLogMonitor(
    schema: InputArtifact[Schema],
    training_statistics: InputArtifact[ExampleStatistics],
    statistics: OutputArtifact[ExampleStatistics],
    anomalies: OutputArtifact[ExampleAnomalies],
    log_prefix: Parameter[str],
    start: Parameter[float],
    end: Parameter[float],
    training_split: Parameter[str] = "train",
    linf: Parameter[float] = 0.1,
    jsd: Parameter[float] = 0.1,
    max_malformed_fraction: Parameter[float] = 0.0,
) -> None:
    """Statistics and anomalies (schema, skew, drift) of the requests logged in [start, end)."""
    facts = monitor_window(
        log_prefix,
        start,
        end,
        schema.uri,
        training_statistics.uri,
        statistics.uri,
        anomalies.uri,
        training_split,
        linf,
        jsd,
        max_malformed_fraction,
    )
    for artifact in (statistics, anomalies):
        artifact.split_names = artifact_utils.encode_split_names([SPLIT])
        artifact.set_string_custom_property("log_prefix", log_prefix)
        artifact.set_string_custom_property("window", f"[{start}, {end})")
    for name, value in facts.items():
        if isinstance(value, int):
            anomalies.set_int_custom_property(name, value)
        else:
            anomalies.set_string_custom_property(name, value)
