"""Runs the monitoring pipeline (pipeline/monitoring_pipeline.py) on one request-log window.

The window's served version is found in the logs (or given), the training
statistics of its newest span in the training pipeline's ML Metadata
(monitoring/baselines.py), and the run is recorded in that same store: a
`RequestLogMonitor` execution with ExampleStatistics and ExampleAnomalies.
"""

from __future__ import annotations

import dataclasses
import os

import lineage
from lineage import metadata_store
from monitoring import baselines, config, outcome, request_logs

DEFAULT_PIPELINE_NAME = "taxi-monitoring"


class MonitorRunError(RuntimeError):
    """The window was not monitored; `problems` are the input problems behind it."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


@dataclasses.dataclass
class MonitorRun:
    """A finished monitoring pipeline run, as recorded in ML Metadata."""

    version: str
    training_span: int
    training_statistics: object  # the re-used ExampleStatistics (MLMD artifact)
    execution_id: int
    statistics: object  # the window's ExampleStatistics (MLMD artifact)
    anomalies: object  # the window's ExampleAnomalies (MLMD artifact)

    @property
    def facts(self) -> dict:
        """The anomalies' custom properties (rows, skew_features, drift_features, ...)."""
        props = self.anomalies.custom_properties
        return {k: getattr(v, v.WhichOneof("value")) for k, v in props.items()}

    @property
    def outcome(self) -> int:
        facts = self.facts
        found = facts.get("skew_features") or facts.get("drift_features")
        return outcome.of(bool(found or facts.get("anomalous_features")))


def monitor_executions(metadata_path: str) -> list:
    """Executions of the RequestLogMonitor component, oldest first."""
    store = lineage.open_store(metadata_path)
    types = {t.id: t.name for t in store.get_execution_types()}
    return sorted(
        (e for e in store.get_executions() if types[e.type_id].endswith("RequestLogMonitor")),
        key=lambda e: e.id,
    )


def run_window(
    *,
    logs: str,
    start: float,
    end: float,
    metadata: str,
    schema_file: str,
    version: str | None = None,
    pipeline_root: str | None = None,
    pipeline_name: str = DEFAULT_PIPELINE_NAME,
    linf: float = config.LINF_THRESHOLD,
    jsd: float = config.JSD_THRESHOLD,
    max_malformed_fraction: float = config.MAX_MALFORMED_FRACTION,
) -> MonitorRun:
    """Runs the monitoring pipeline on `[start, end)` of the request logs `logs`.

    Args:
      pipeline_root: default `<metadata dir>/monitoring_pipeline` (required
        with a MySQL store).

    Raises:
      MonitorRunError: no metadata, no logged request (without `version`),
        no training statistics for the version, or the pipeline failed (its
        execution is recorded FAILED in MLMD).
    """
    if not metadata_store.exists(metadata):
        raise MonitorRunError(f"metadata not found: {metadata}")
    if pipeline_root is None:
        if metadata_store.is_mysql(metadata):
            raise MonitorRunError("a pipeline root is required with a MySQL metadata store")
        pipeline_root = os.path.join(
            os.path.dirname(os.path.abspath(metadata)), "monitoring_pipeline"
        )
    if version is None:
        window = request_logs.read_window(logs, start, end)
        version = window.served_version
        if version is None:
            raise MonitorRunError(
                f"missing window: no logged requests in [{start}, {end}) under {logs!r} "
                f"({len(window.files)} files, {window.malformed} malformed)",
                window.problems,
            )
    try:
        span, artifact = baselines.training_statistics_artifact(
            lineage.open_store(metadata), str(version)
        )
    except (lineage.LineageError, RuntimeError, ValueError) as e:
        raise MonitorRunError(f"training statistics of version {version}: {e}") from None
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.monitoring_pipeline import create_monitoring_pipeline

    before = {e.id for e in monitor_executions(metadata)}
    try:
        LocalDagRunner().run(
            create_monitoring_pipeline(
                pipeline_name=pipeline_name,
                pipeline_root=pipeline_root,
                metadata_path=metadata,
                log_prefix=os.path.abspath(logs),
                start=start,
                end=end,
                schema_file=os.path.abspath(schema_file),
                training_statistics_uri=artifact.uri,
                training_statistics_split_names=artifact.properties["split_names"].string_value,
                linf=linf,
                jsd=jsd,
                max_malformed_fraction=max_malformed_fraction,
            )
        )
    except Exception as e:  # the component's failure, already recorded FAILED in MLMD
        ids = [x.id for x in monitor_executions(metadata) if x.id not in before]
        raise MonitorRunError(
            f"monitoring pipeline failed (MLMD execution {ids}): {type(e).__name__}: {e}"
        ) from e
    store = lineage.open_store(metadata)
    execution = [e for e in monitor_executions(metadata) if e.id not in before][-1]
    outputs = [
        ev.artifact_id
        for ev in store.get_events_by_execution_ids([execution.id])
        if ev.type == ev.OUTPUT
    ]
    types = {t.id: t.name for t in store.get_artifact_types()}
    found = {types[a.type_id]: a for a in store.get_artifacts_by_id(outputs)}
    return MonitorRun(
        str(version),
        span,
        artifact,
        execution.id,
        found["ExampleStatistics"],
        found["ExampleAnomalies"],
    )
