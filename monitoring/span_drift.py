"""Drift between consecutive ingested spans (their training statistics in ML Metadata)."""

from __future__ import annotations

import dataclasses
import os

from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from monitoring import artifacts, drift, outcome, report

TITLE = "Monitor: drift between consecutive spans"


@dataclasses.dataclass
class SpanDrift:
    """Every consecutive pair's validation, and their findings merged."""

    spans: list[int]
    pairs: dict[int, drift.Validation]  # span -> validation against the span before
    validation: drift.Validation | None  # newest pair's anomalies, every pair's findings
    anomalous: list[str]  # "<feature>@<span>"
    problems: list[str]

    @property
    def outcome(self) -> int:
        if self.validation is None:
            return outcome.BAD_INPUT
        return outcome.of(
            bool(self.anomalous or [f for f in self.validation.findings if f.exceeded])
        )


def check(
    stats: dict[int, statistics_pb2.DatasetFeatureStatisticsList], schema: schema_pb2.Schema
) -> SpanDrift:
    """Validates each span against the one before (`schema` with comparators)."""
    spans = sorted(stats)
    if len(spans) < 2:
        problem = f"need two spans with statistics in ML Metadata, found {spans}"
        return SpanDrift(spans, {}, None, [], [problem])
    pairs, findings, anomalous, result = {}, [], [], None
    for previous, span in zip(spans, spans[1:], strict=False):
        result = drift.validate(
            stats[span], schema, previous=stats[previous], environment="TRAINING"
        )
        pairs[span] = result
        findings += [dataclasses.replace(f, feature=f"{f.feature}@{span}") for f in result.findings]
        anomalous += [f"{name}@{span}" for name in result.anomalous_features]
    # The report shows the newest pair's anomalies and every pair's drift.
    return SpanDrift(spans, pairs, drift.Validation(result.anomalies, findings, []), anomalous, [])


def write_outputs(result: SpanDrift, out: str, metadata: str, textfile: str | None = None) -> str:
    """Writes `<out>/spans/` (anomalies per span, report, summary, gauges); returns it."""
    directory = os.path.join(out, "spans")
    for span, validation in result.pairs.items():
        artifacts.write_anomalies(
            os.path.join(directory, "anomalies"), f"span-{span}", validation.anomalies
        )
    report.write_check(
        directory,
        TITLE,
        {"metadata": metadata, "spans": result.spans},
        result.validation,
        result.problems,
        "",
        {},
        0,
        "spans",
        textfile,
        anomalous=result.anomalous,
    )
    return directory
