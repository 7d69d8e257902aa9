"""A/B report of a canary against the stable version: Markdown, JSON and HTML.

Per version: requests, errors, latency p50/p95/p99 (the server's per-version
Prometheus series), live accuracy with its Wilson 95% interval and the number
of labelled predictions; then the test (statistic, p-value) and the verdict.
`ab --report-dir` writes one, and `watch` writes one at every canary decision.
"""

from __future__ import annotations

import html
import json
import os
import time

COLUMNS = (
    ("requests", "requests"),
    ("errors", "errors"),
    ("error rate", "error_rate"),
    ("p50 ms", "p50_ms"),
    ("p95 ms", "p95_ms"),
    ("p99 ms", "p99_ms"),
    ("labelled", "labelled"),
    ("accuracy", "accuracy"),
    ("accuracy 95% CI", "ci95"),
)


def build(result: dict, versions: dict, serving: dict, context: dict | None = None) -> dict:
    """The report as a dict.

    Args:
      result: `ab.verdict(...)` output.
      versions: {"stable": version, "canary": version}.
      serving: per-version {requests, errors, p50_ms, p95_ms, p99_ms} (may be empty).
      context: anything else worth keeping (decision, reason, counts, problems, ...).
    """
    rows = {}
    for role in ("stable", "canary"):
        version = str(versions[role])
        m = serving.get(version, {})
        requests, errors = m.get("requests"), m.get("errors")
        rows[role] = {
            "version": version,
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests if requests else None,
            "p50_ms": m.get("p50_ms"),
            "p95_ms": m.get("p95_ms"),
            "p99_ms": m.get("p99_ms"),
            "labelled": result[role]["labelled"],
            "correct": result[role]["correct"],
            "accuracy": result[role]["accuracy"],
            "ci95": result[role]["ci95"],
        }
    return {
        "created": time.time(),
        "versions": rows,
        "test": result["test"],
        "alpha": result["alpha"],
        "min_samples": result["min_samples"],
        "z": result["z"],
        "p_value": result["p_value"],
        "verdict": result["verdict"],
        **(context or {}),
    }


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:g}"
    return str(value)


def markdown(report: dict) -> str:
    lines = [
        "# A/B report: canary vs stable",
        "",
        "| version | " + " | ".join(title for title, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for role, row in report["versions"].items():
        cells = [_cell(row[key]) for _, key in COLUMNS]
        lines.append(f"| {row['version']} ({role}) | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"- test: {report['test']}, alpha {report['alpha']}, "
        f"min labelled per version {report['min_samples']}",
        f"- z = {_cell(report['z'])}, p-value = {_cell(report['p_value'])}",
        f"- verdict: **{report['verdict']}**",
    ]
    for key in ("decision", "reason", "execution_id", "guard_rails", "counts", "problems"):
        if report.get(key) not in (None, [], {}):
            lines.append(f"- {key.replace('_', ' ')}: {_cell(report[key])}")
    return "\n".join(lines) + "\n"


def to_html(report: dict) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for title, _ in COLUMNS)
    body = "".join(
        f"<tr><td>{html.escape(row['version'])} ({role})</td>"
        + "".join(f"<td>{html.escape(_cell(row[key]))}</td>" for _, key in COLUMNS)
        + "</tr>"
        for role, row in report["versions"].items()
    )
    facts = "".join(
        f"<li>{html.escape(k)}: {html.escape(_cell(report.get(k)))}</li>"
        for k in ("test", "alpha", "min_samples", "z", "p_value", "verdict", "decision", "reason")
        if k in report
    )
    return (
        "<!doctype html><meta charset=utf-8><title>A/B report</title>"
        f"<h1>A/B report: canary vs stable</h1><table border=1><tr><th>version</th>{head}</tr>"
        f"{body}</table><ul>{facts}</ul>\n"
    )


def write(directory: str, report: dict) -> dict:
    """Writes report.md, report.json and report.html; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = {ext: os.path.join(directory, f"report.{ext}") for ext in ("md", "json", "html")}
    with open(paths["md"], "w") as f:
        f.write(markdown(report))
    with open(paths["json"], "w") as f:
        json.dump(report, f, indent=1, default=str)
    with open(paths["html"], "w") as f:
        f.write(to_html(report))
    return paths
