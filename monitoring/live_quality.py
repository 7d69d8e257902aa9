"""The live-quality check of a window: request logs + late labels -> accuracy/AUC per version.

Writes `<out>/quality-<start>-<end>/`: `summary.json`, `report.md` and
`metrics.prom` (monitoring/gauges.py); the joining is monitoring/quality.py.
"""

from __future__ import annotations

import json
import os

from monitoring import config, gauges, outcome, quality, request_logs
from monitoring.report import format_time


def check(
    logs: str,
    labels: str,
    start: float,
    end: float,
    threshold: float = config.POSITIVE_THRESHOLD,
) -> dict:
    """Joins the labels (CSV request_id,label) to the predictions logged in `[start, end)`.

    Returns `quality.join`'s result with the log's problems and counts, the
    inputs, and `outcome` (`BAD_INPUT` for no predictions in the window,
    malformed log records or labels, labels of unknown request ids).

    Raises:
      ValueError: `end` is not after `start`.
      OSError: the labels file cannot be read.
    """
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    found = quality.read_labels(labels)
    window = request_logs.read_window(logs, float("-inf"), float("inf"))
    result = quality.join(window.predictions, found, start, end, threshold)
    result["problems"] = window.problems + result["problems"]
    result["counts"]["malformed_log_records"] = window.malformed
    result.update(logs=logs, labels_file=labels, start=start, end=end)
    counts = result["counts"]
    if not window.files:
        result["problems"].append(f"no request log files match {logs!r}")
    elif not counts["predictions_in_window"]:
        result["problems"].append(f"missing window: no logged predictions in [{start}, {end})")
    bad = (
        not counts["predictions_in_window"]
        or window.malformed
        or found.malformed
        or counts["unknown_request_ids"]
    )
    result["outcome"] = outcome.of(False, bool(bad))
    return result


def markdown(result: dict) -> str:
    """The report of a `check` result: metrics per version, counts, problems."""
    lines = [
        f"# Live quality {format_time(result['start'])} .. {format_time(result['end'])}",
        "",
        "| version | labelled | accuracy | AUC |",
        "|---|---|---|---|",
    ]

    def fmt(value):
        return "n/a" if value is None else f"{value:.4f}"

    for version, m in [("all", result["overall"]), *result["versions"].items()]:
        lines.append(f"| {version} | {m['labelled']} | {fmt(m['accuracy'])} | {fmt(m['auc'])} |")
    lines += ["", "## Counts", ""] + [f"- {k}: {v}" for k, v in result["counts"].items()]
    if result["problems"]:
        lines += ["", f"## Problems ({len(result['problems'])})", ""]
        lines += [f"- {p}" for p in result["problems"][:20]]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, out: str, textfile: str | None = None) -> str:
    """Writes `<out>/quality-<start>-<end>/` (summary, report, gauges); returns it."""
    directory = os.path.join(out, f"quality-{int(result['start'])}-{int(result['end'])}")
    os.makedirs(directory, exist_ok=True)
    summary = {k: v for k, v in result.items() if k != "outcome"}
    with open(os.path.join(directory, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write(markdown(result))
    registry = gauges.quality_registry(result, result["end"])
    gauges.write_textfile(os.path.join(directory, "metrics.prom"), registry)
    if textfile:
        gauges.write_textfile(textfile, registry)
    return directory
