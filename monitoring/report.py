"""Readable Markdown report of one monitor run."""

from __future__ import annotations

import datetime

from monitoring.drift import Validation


def _time(seconds: float) -> str:
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
            value = _time(value)
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
