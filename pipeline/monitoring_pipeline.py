"""`create_monitoring_pipeline`: one request-log window checked as a TFX pipeline run.

    ImportSchemaGen (curated schema) ---------------------------+
    Importer (training ExampleStatistics, re-used from MLMD) ---+--> RequestLogMonitor
                                                                     -> ExampleStatistics
                                                                     -> ExampleAnomalies

With the training pipeline's metadata file, the Importer finds the training
StatisticsGen artifact by its URI and split names and re-uses it (no new
artifact), so the monitoring results are linked to the data the served model
was trained on. Every path is an argument; nothing is read from the
environment.
"""

from __future__ import annotations

from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.common.importer import Importer
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.types.standard_artifacts import ExampleStatistics

from components.request_log_monitor.component import RequestLogMonitor
from lineage import metadata_store
from monitoring import config
from pipeline import configs

MONITOR_ID = "RequestLogMonitor"


def create_monitoring_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    metadata_path: str,
    log_prefix: str,
    start: float,
    end: float,
    schema_file: str,
    training_statistics_uri: str,
    training_statistics_split_names: str | None = None,
    training_split: str = "train",
    linf: float = config.LINF_THRESHOLD,
    jsd: float = config.JSD_THRESHOLD,
    max_malformed_fraction: float = config.MAX_MALFORMED_FRACTION,
    beam_pipeline_args: list[str] | None = None,
) -> tfx_pipeline.Pipeline:
    """The monitoring pipeline of one window `[start, end)` (unix seconds).

    Args:
      training_statistics_split_names: the `split_names` property of the
        training statistics artifact (as stored in MLMD, e.g. '["train", "eval"]'):
        with it the Importer re-uses that artifact instead of registering a copy.
    """
    schema = ImportSchemaGen(schema_file=schema_file)
    properties = (
        {"split_names": training_statistics_split_names} if training_statistics_split_names else {}
    )
    training = Importer(
        source_uri=training_statistics_uri,
        artifact_type=ExampleStatistics,
        properties=properties,
    ).with_id("TrainingStatisticsImporter")
    monitor = RequestLogMonitor(
        schema=schema.outputs["schema"],
        training_statistics=training.outputs["result"],
        log_prefix=log_prefix,
        start=float(start),
        end=float(end),
        training_split=training_split,
        linf=linf,
        jsd=jsd,
        max_malformed_fraction=max_malformed_fraction,
    ).with_id(MONITOR_ID)
    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[schema, training, monitor],
        enable_cache=False,  # a window's log files may still grow
        metadata_connection_config=metadata_store.connection_config(metadata_path),
        beam_pipeline_args=list(beam_pipeline_args or configs.BEAM_ARGS_IN_MEMORY),
    )
