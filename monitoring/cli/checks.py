"""`taxi-monitor window | spans | monitor-pipeline`: skew and drift checks."""

from __future__ import annotations

import os

from monitoring import artifacts, baselines, config, drift, drift_thresholds, span_drift, window
from monitoring.cli.common import (
    DEFAULT_SCHEMA,
    EXIT_BAD_INPUT,
    METADATA_HELP,
    calls,
    check_parent,
    error,
    metadata_default,
    parse_time,
    print_problems,
)


def add_parsers(sub) -> None:
    """Registers `window`, `spans` and `monitor-pipeline` on `sub` (argparse subparsers)."""
    common = check_parent()
    w = sub.add_parser("window", parents=[common], help="skew/drift of a request log window")
    w.add_argument("--logs", required=True, help="request log filename_prefix or directory")
    w.add_argument("--start", type=parse_time, required=True)
    w.add_argument("--end", type=parse_time, required=True)
    w.add_argument("--version", help="served version (default: newest in the window)")
    w.add_argument(
        "--training-statistics",
        help="instead of --metadata: a StatisticsGen output folder (Split-train/FeatureStats.pb) "
        "to measure skew against",
    )
    w.add_argument(
        "--null-table",
        help="null distances by window size (default: the bundled monitoring/drift_null.json, "
        "see monitoring/drift_thresholds.py): thresholds are max(--linf/--jsd, null quantile "
        "at the window's size); '' = fixed --linf/--jsd",
    )
    w.add_argument(
        "--max-malformed-fraction",
        type=float,
        default=config.MAX_MALFORMED_FRACTION,
        help="malformed records allowed before exit 2 (default 0)",
    )
    w.set_defaults(func=calls(run_window))
    s = sub.add_parser("spans", parents=[common], help="drift between consecutive data spans")
    s.set_defaults(func=calls(run_spans))
    mp = sub.add_parser(
        "monitor-pipeline",
        help="a request-log window as a TFX pipeline run (ExampleStatistics/ExampleAnomalies)",
    )
    mp.add_argument("--logs", required=True, help="request log filename_prefix or directory")
    mp.add_argument("--start", type=parse_time, required=True)
    mp.add_argument("--end", type=parse_time, required=True)
    mp.add_argument(
        "--metadata",
        default=metadata_default(),
        required=not metadata_default(),
        help=f"the training pipeline's ML Metadata{METADATA_HELP}",
    )
    mp.add_argument("--schema", default=DEFAULT_SCHEMA, help="curated schema (pbtxt)")
    mp.add_argument("--version", help="served version (default: newest in the window)")
    mp.add_argument(
        "--pipeline-root", help="default: <metadata dir>/monitoring_pipeline (MySQL: required)"
    )
    mp.add_argument("--pipeline-name", default="taxi-monitoring")
    mp.add_argument("--linf", type=float, default=config.LINF_THRESHOLD)
    mp.add_argument("--jsd", type=float, default=config.JSD_THRESHOLD)
    mp.add_argument("--max-malformed-fraction", type=float, default=config.MAX_MALFORMED_FRACTION)
    mp.set_defaults(func=calls(run_monitor_pipeline))


def training_lookup(metadata: str):
    """served version -> (span, training statistics) from the ML Metadata `metadata`."""
    import lineage
    from lineage import metadata_store

    def lookup(version: str):
        if not metadata_store.exists(metadata):
            raise OSError(f"metadata not found: {metadata}")
        return baselines.training_statistics(lineage.open_store(metadata), version)

    return lookup


def statistics_lookup(directory: str, split: str = "train"):
    """served version -> (None, the statistics of `split` in a StatisticsGen output folder)."""
    return lambda _version: (None, artifacts.read_statistics(directory, split))


def run_window(
    logs: str,
    start: float,
    end: float,
    out: str,
    *,
    metadata: str | None = None,
    training_statistics: str | None = None,
    schema: str = DEFAULT_SCHEMA,
    version: str | None = None,
    linf: float = config.LINF_THRESHOLD,
    jsd: float = config.JSD_THRESHOLD,
    null_table: str | None = None,
    max_malformed_fraction: float = config.MAX_MALFORMED_FRACTION,
    textfile: str | None = None,
) -> int:
    """`window`: the window check (monitoring/window.py), its outputs under `out`, a summary.

    `null_table`: None for the bundled table, "" for the fixed `linf`/`jsd`.
    Returns the exit code.
    """
    if end <= start:
        return error(f"--end ({end}) must be after --start ({start})")
    if metadata and training_statistics:
        return error("give --metadata or --training-statistics, not both")
    training = None
    if training_statistics:
        training = statistics_lookup(training_statistics)
    elif metadata:
        training = training_lookup(metadata)
    result = window.check(
        logs,
        start,
        end,
        drift.load_schema(schema),
        training,
        version=version,
        linf=linf,
        jsd=jsd,
        null_table=None if null_table == "" else (null_table or drift_thresholds.NULL_TABLE),
        max_malformed_fraction=max_malformed_fraction,
    )
    if training is None and result.validation is not None:
        result.problems.append("no --metadata: skew against training statistics not computed")
    directory = window.write_outputs(result, out, textfile)
    if result.validation is None:
        print_problems(result.problems)
        return EXIT_BAD_INPUT
    return finish(directory, result.validation, result.problems, result.outcome)


def run_spans(
    out: str,
    *,
    metadata: str | None = None,
    schema: str = DEFAULT_SCHEMA,
    linf: float = config.LINF_THRESHOLD,
    jsd: float = config.JSD_THRESHOLD,
    textfile: str | None = None,
) -> int:
    """`spans`: drift between consecutive spans' statistics in ML Metadata."""
    import lineage
    from lineage import metadata_store

    if not metadata or not metadata_store.exists(metadata):
        return error(f"metadata not found: {metadata!r}")
    stats = baselines.span_statistics(lineage.open_store(metadata))
    result = span_drift.check(stats, drift.comparator_schema(drift.load_schema(schema), linf, jsd))
    directory = span_drift.write_outputs(result, out, metadata, textfile)
    if result.validation is None:
        print_problems(result.problems)
        return EXIT_BAD_INPUT
    return finish(directory, result.validation, [], result.outcome, result.anomalous)


def run_monitor_pipeline(
    logs: str,
    start: float,
    end: float,
    metadata: str,
    *,
    schema: str = DEFAULT_SCHEMA,
    version: str | None = None,
    pipeline_root: str | None = None,
    pipeline_name: str = "taxi-monitoring",
    linf: float = config.LINF_THRESHOLD,
    jsd: float = config.JSD_THRESHOLD,
    max_malformed_fraction: float = config.MAX_MALFORMED_FRACTION,
) -> int:
    """`monitor-pipeline`: `window` as a TFX pipeline run recorded in the training MLMD."""
    from lineage import metadata_store
    from pipeline import monitoring_runner

    if end <= start:
        return error(f"--end ({end}) must be after --start ({start})")
    if metadata_store.is_mysql(metadata) and not pipeline_root:
        return error("--pipeline-root is required with a MySQL --metadata")
    try:
        run = monitoring_runner.run_window(
            logs=logs,
            start=start,
            end=end,
            metadata=metadata,
            schema_file=schema,
            version=version,
            pipeline_root=pipeline_root,
            pipeline_name=pipeline_name,
            linf=linf,
            jsd=jsd,
            max_malformed_fraction=max_malformed_fraction,
        )
    except monitoring_runner.MonitorRunError as e:
        print_problems(e.problems)
        return error(str(e))
    facts, statistics, anomalies = run.facts, run.statistics, run.anomalies
    print(
        f"monitoring pipeline: version {run.version} (training span {run.training_span}, "
        f"statistics artifact {run.training_statistics.id}); MLMD execution "
        f"{run.execution_id}; ExampleStatistics {statistics.id} at {statistics.uri}; "
        f"ExampleAnomalies {anomalies.id} at {anomalies.uri}"
    )
    print(
        f"  rows {facts.get('rows')}, skew features {facts.get('skew_features', 0)}, "
        f"drift features {facts.get('drift_features', 0)}, anomalous features "
        f"[{facts.get('anomalous_features', '')}]"
    )
    return run.outcome


def finish(directory, validation, problems, code, anomalous=None) -> int:
    """Prints the problems and what was found; returns `code`."""
    anomalous = validation.anomalous_features if anomalous is None else anomalous
    exceeded = [f for f in validation.findings if f.exceeded]
    print_problems(problems)
    print(
        f"{len(anomalous)} anomalous features, {len(exceeded)} skew/drift measurements "
        f"above threshold; report: {os.path.join(directory, 'report.md')}"
    )
    for f in exceeded:
        print(f"  {f.kind} {f.feature} {f.measure}={f.value:.4f} > {f.threshold}")
    return code
