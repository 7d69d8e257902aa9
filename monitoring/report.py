"""The outputs of one skew/drift check: Markdown report, summary.json, gauges, anomalies."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

from monitoring import artifacts, gauges
from monitoring.drift import Validation


def format_time(seconds: float) -> str:
    """Unix seconds as ISO 8601 UTC (seconds precision)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(
        timespec="seconds"
    )


def markdown(
    title: str,
    facts: dict,
    validation: Validation | None,
    problems: list[str],
    max_problems: int = 20,
) -> str:
    """Report: facts (key -> value), anomalies, skew/drift table, input problems."""
    lines = [f"# {title}", ""]
    for key, value in facts.items():
        if key in ("start", "end") and isinstance(value, (int, float)):
            value = format_time(value)
        lines.append(f"- **{key}**: {value}")
    lines.append("")
    if problems:
        lines += [f"## Input problems ({len(problems)})", ""]
        lines += [f"- {p}" for p in problems[:max_problems]]
        if len(problems) > max_problems:
            lines.append(f"- ... and {len(problems) - max_problems} more")
        lines.append("")
    if validation is None:
        lines += ["No validation: see the input problems above.", ""]
        return "\n".join(lines)
    anomalies = validation.anomalies.anomaly_info
    lines += [f"## Anomalies ({len(anomalies)})", ""]
    if anomalies:
        lines += ["| feature | anomaly | description |", "|---|---|---|"]
        for name in sorted(anomalies):
            info = anomalies[name]
            for reason in info.reason or [info]:
                lines.append(f"| {name} | {reason.short_description} | {reason.description} |")
    else:
        lines.append("None.")
    lines.append("")
    for note in validation.notes:
        lines.append(f"_{note}_")
    exceeded = [f for f in validation.findings if f.exceeded]
    lines += ["", f"## Skew and drift ({len(exceeded)} above threshold)", ""]
    if validation.findings:
        lines += [
            "| kind | feature | measure | value | threshold | exceeded |",
            "|---|---|---|---|---|---|",
        ]
        for f in sorted(validation.findings, key=lambda f: (not f.exceeded, f.kind, f.feature)):
            lines.append(
                f"| {f.kind} | {f.feature} | {f.measure} | {f.value:.4f} | "
                f"{f.threshold:.4f} | {'**yes**' if f.exceeded else 'no'} |"
            )
    lines.append("")
    return "\n".join(lines)


def write_check(
    directory: str,
    title: str,
    facts: dict,
    validation: Validation | None,
    problems: list[str],
    split: str,
    counts: dict,
    end: float,
    scope: str,
    textfile: str | None = None,
    anomalous: list[str] | None = None,
) -> None:
    """Writes `report.md`, `summary.json`, `metrics.prom` (and `textfile`) and the
    anomalies (`anomalies/Split-<split>/`, if `split` and a validation) into `directory`.

    Args:
      anomalous: the anomalous features (default: the validation's).
      end: the time the gauges are stamped with; scope: their `scope` label.
    """
    os.makedirs(directory, exist_ok=True)
    if validation is not None and split:
        artifacts.write_anomalies(os.path.join(directory, "anomalies"), split, validation.anomalies)
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write(markdown(title, facts, validation, problems))
    findings = validation.findings if validation is not None else []
    if anomalous is None:
        anomalous = validation.anomalous_features if validation is not None else []
    summary = dict(
        facts,
        counts=counts,
        problems=problems,
        anomalous_features=anomalous,
        findings=[dict(dataclasses.asdict(x), exceeded=x.exceeded) for x in findings],
        notes=validation.notes if validation is not None else [],
    )
    with open(os.path.join(directory, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    registry = gauges.registry_for(scope, findings, anomalous, counts, end)
    gauges.write_textfile(os.path.join(directory, "metrics.prom"), registry)
    if textfile:
        gauges.write_textfile(textfile, registry)
