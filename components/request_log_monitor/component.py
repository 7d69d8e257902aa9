"""`RequestLogMonitor`: a request-log window checked inside a TFX pipeline.

A thin wrapper over `monitoring.window.check` (the check `taxi-monitor window`
runs), so monitoring results are artifacts in ML Metadata with lineage:

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
import os

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies, ExampleStatistics, Schema

from monitoring import artifacts, config, drift, window

SPLIT = window.SPLIT


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
    linf: float = config.LINF_THRESHOLD,
    jsd: float = config.JSD_THRESHOLD,
    max_malformed_fraction: float = config.MAX_MALFORMED_FRACTION,
) -> dict:
    """Writes the window's statistics and anomalies; returns the facts (custom properties).

    The check is `monitoring.window.check`, the one `taxi-monitor window` runs.
    """
    schema = drift.load_schema(os.path.join(schema_uri, "schema.pbtxt"))

    def training(_version: str):
        return None, artifacts.read_statistics(training_statistics_uri, training_split)

    try:
        result = window.check(
            log_prefix,
            start,
            end,
            schema,
            training,
            linf=linf,
            jsd=jsd,
            max_malformed_fraction=max_malformed_fraction,
        )
    except ValueError as e:
        raise MonitoringInputError(str(e)) from None
    if result.bad_input:
        details = (
            f" (first problems: {result.window.problems[:3]})" if result.window.problems else ""
        )
        raise MonitoringInputError("; ".join(result.errors) + details)
    window.write_artifacts(result, statistics_uri, anomalies_uri)
    return {
        "rows": len(result.window.rows),
        "records": result.window.records,
        "malformed_records": result.window.malformed,
        "outside_window": result.window.outside,
        "previous_window_rows": result.previous_rows,
        "skew_features": result.features_above("skew"),
        "drift_features": result.features_above("drift"),
        "anomalous_features": ",".join(result.validation.anomalous_features),
        "findings": json.dumps(
            [
                {"kind": f.kind, "feature": f.feature, "measure": f.measure, "value": f.value}
                for f in result.exceeded
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
    linf: Parameter[float] = config.LINF_THRESHOLD,
    jsd: Parameter[float] = config.JSD_THRESHOLD,
    max_malformed_fraction: Parameter[float] = config.MAX_MALFORMED_FRACTION,
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
