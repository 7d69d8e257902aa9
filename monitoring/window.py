"""The request-log window check: skew and drift of the requests logged in `[start, end)`.

One function, `check`, used by `taxi-monitor window` and by the
RequestLogMonitor TFX component (components/request_log_monitor):

1. reads the request logs of the window and of the window of the same
   length just before it (monitoring/request_logs.py);
2. decides whether the window is bad input: no log files, no logged request
   in the window, or more malformed records than `max_malformed_fraction`;
3. computes the window's TFDV statistics and validates them against the
   schema's SERVING environment with comparators whose thresholds follow the
   window's size (monitoring/drift_thresholds.py): skew against the training
   statistics of the served version, drift against the previous window.

The caller decides what bad input means for it: the CLI writes its report
and exits 2, the component fails its execution.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os

from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from monitoring import artifacts, config, drift, drift_thresholds, outcome, report, request_logs

SPLIT = "serving"
TRAINING_ERRORS = (LookupError, OSError, RuntimeError, ValueError)
"""What a training-statistics lookup may raise: a problem of the window, not a crash."""

Statistics = statistics_pb2.DatasetFeatureStatisticsList
TrainingLookup = collections.abc.Callable[[str], tuple[int | None, Statistics]]
"""served version -> (training span or None, training statistics)."""


@dataclasses.dataclass
class WindowCheck:
    """What `check` read, decided and measured for one window."""

    logs: str
    start: float
    end: float
    window: request_logs.LogWindow
    problems: list[str]  # every input problem, in the order found
    errors: list[str]  # the problems that make the window bad input
    previous_rows: int | None = None  # rows of the previous window (None: not read)
    version: str | None = None  # the served version compared with its training data
    training_span: int | None = None
    statistics: Statistics | None = None
    validation: drift.Validation | None = None

    @property
    def bad_input(self) -> bool:
        return bool(self.errors)

    @property
    def exceeded(self) -> list[drift.Finding]:
        """Skew and drift measurements above their thresholds."""
        return [f for f in self.validation.findings if f.exceeded] if self.validation else []

    def features_above(self, kind: str) -> int:
        """Features with a `kind` ("skew" or "drift") measurement above its threshold."""
        return len({f.feature for f in self.exceeded if f.kind == kind})

    @property
    def outcome(self) -> int:
        """`outcome.BAD_INPUT`, else `FOUND` with anomalies or skew/drift above a threshold."""
        if self.validation is None:
            return outcome.BAD_INPUT
        found = bool(self.validation.anomalous_features or self.exceeded)
        return outcome.of(found, self.bad_input)

    @property
    def name(self) -> str:
        """`window-<start>-<end>`: the folder of its outputs."""
        return f"window-{int(self.start)}-{int(self.end)}"

    @property
    def counts(self) -> dict:
        """Records by status (the `taxi_monitor_records` gauge)."""
        w = self.window
        return {"ok": w.records, "malformed": w.malformed, "outside_window": w.outside}

    def facts(self) -> dict:
        """The report's facts (the CLI's summary.json keys)."""
        w = self.window
        facts = {
            "logs": self.logs,
            "start": self.start,
            "end": self.end,
            "files": len(w.files),
            "records": w.records,
            "rows": len(w.rows),
            "malformed records": w.malformed,
            "skipped damaged bytes": w.skipped_bytes,
            "versions": dict(w.versions),
        }
        if self.previous_rows is not None:
            facts["previous window rows"] = self.previous_rows
            facts["served version"] = self.version
        if self.training_span is not None:
            facts["training span"] = self.training_span
        return facts


def _read(logs: str, start: float, end: float, max_malformed_fraction: float) -> WindowCheck:
    window = request_logs.read_window(logs, start, end)
    result = WindowCheck(logs, start, end, window, list(window.problems), [])
    total = window.records + window.outside + window.malformed
    if not window.files:
        result.errors.append(f"no request log files match {logs!r}")
    elif not window.rows:
        result.errors.append(
            f"missing window: no logged requests in [{start}, {end}) "
            f"({total} records read, {window.outside} outside the window)"
        )
    if total and window.malformed / total > max_malformed_fraction:
        result.errors.append(
            f"{window.malformed} of {total} records malformed "
            f"(allowed fraction {max_malformed_fraction})"
        )
    result.problems += result.errors
    return result


def comparator_schema(
    schema: schema_pb2.Schema,
    window_rows: int,
    previous_rows: int,
    linf: float = config.LINF_THRESHOLD,
    jsd: float = config.JSD_THRESHOLD,
    null_table: str | None = drift_thresholds.NULL_TABLE,
) -> schema_pb2.Schema:
    """The comparators of a window: thresholds for its size, or fixed ones without a null table.

    Args:
      null_table: the null distances by window size (drift_thresholds.read_table);
        None: the fixed thresholds `linf` / `jsd` for every window.
    """
    if null_table is None:
        return drift.comparator_schema(schema, linf, jsd)
    table = drift_thresholds.read_table(null_table)
    return drift_thresholds.window_comparator_schema(
        schema, window_rows, previous_rows, linf, jsd, table
    )


def check(
    logs: str,
    start: float,
    end: float,
    schema: schema_pb2.Schema,
    training: TrainingLookup | None = None,
    *,
    version: str | None = None,
    linf: float = config.LINF_THRESHOLD,
    jsd: float = config.JSD_THRESHOLD,
    null_table: str | None = drift_thresholds.NULL_TABLE,
    max_malformed_fraction: float = config.MAX_MALFORMED_FRACTION,
) -> WindowCheck:
    """Reads, judges and validates the window `[start, end)` of the request logs `logs`.

    Args:
      logs: the server's request-log `filename_prefix` (or a directory).
      schema: the curated schema (comparators are added for the window).
      training: looks up the training statistics of the served version; None:
        skew is not computed. What it raises (`TRAINING_ERRORS`) is bad input.
      version: the served version (default: the newest logged in the window).
      null_table: see `comparator_schema`.

    Raises:
      ValueError: `end` is not after `start`.
    """
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    result = _read(logs, start, end, max_malformed_fraction)
    window = result.window
    if not window.rows:
        return result
    before = request_logs.read_window(logs, start - (end - start), start)
    result.previous_rows = len(before.rows)
    result.version = version or window.served_version
    compared = comparator_schema(schema, len(window.rows), len(before.rows), linf, jsd, null_table)
    result.statistics = drift.statistics_from_rows(window.rows, compared)
    previous = drift.statistics_from_rows(before.rows, compared) if before.rows else None
    training_statistics = None
    if training is not None:
        try:
            result.training_span, training_statistics = training(str(result.version))
        except TRAINING_ERRORS as e:
            error = f"training statistics of version {result.version}: {e}"
            result.errors.append(error)
            result.problems.append(error)
    result.validation = drift.validate(
        result.statistics, compared, training=training_statistics, previous=previous
    )
    return result


def write_artifacts(result: WindowCheck, statistics_dir: str, anomalies_dir: str) -> None:
    """The window's statistics and anomalies in StatisticsGen's / ExampleValidator's layout."""
    artifacts.write_statistics(statistics_dir, SPLIT, result.statistics)
    artifacts.write_anomalies(anomalies_dir, SPLIT, result.validation.anomalies)


def write_outputs(result: WindowCheck, out: str, textfile: str | None = None) -> str:
    """Writes the check's outputs into `<out>/<result.name>/`; returns that folder.

    `report.md`, `summary.json`, `metrics.prom` (also to `textfile`, for the
    node exporter) and, once validated, `statistics/` and `anomalies/`.
    """
    directory = os.path.join(out, result.name)
    if result.validation is not None:
        artifacts.write_statistics(os.path.join(directory, "statistics"), SPLIT, result.statistics)
    report.write_check(
        directory,
        f"Monitor {result.name}",
        result.facts(),
        result.validation,
        result.problems,
        SPLIT,
        result.counts,
        result.end,
        "window",
        textfile,
    )
    return directory
