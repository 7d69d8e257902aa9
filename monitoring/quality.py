"""Live quality: late ground-truth labels joined to logged predictions.

Labels are a CSV with a header and the columns `request_id` and `label`
(0/1: a big tipper or not); rows of a batched request are `<id>/<i>`
(`request_logs.row_request_ids`). A prediction counts as positive at
`threshold`. Per model version (and overall): labelled count, accuracy and
ROC AUC (Mann-Whitney; None when only one class is present).

Bad input is counted, never skipped silently: malformed label rows
(missing id, label not 0/1, duplicate id), labels whose request id is in no
request log (`unknown`), and labels of requests logged outside the window
(`outside_window`, not an error: they belong to another window).
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import os

from monitoring import config


@dataclasses.dataclass
class Labels:
    labels: dict[str, int]
    malformed: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


def read_labels(path: str) -> Labels:
    """Reads the labels CSV (raises OSError if unreadable, ValueError without the columns)."""
    result = Labels({})
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"request_id", "label"} <= set(reader.fieldnames):
            raise ValueError(
                f"{path}: needs the columns request_id,label (found {reader.fieldnames})"
            )
        for line, row in enumerate(reader, start=2):
            request_id = (row.get("request_id") or "").strip()
            label = (row.get("label") or "").strip()
            problem = None
            if not request_id:
                problem = "no request_id"
            elif label not in ("0", "1", "0.0", "1.0"):
                problem = f"label {label!r} is not 0 or 1"
            elif request_id in result.labels:
                problem = f"duplicate request_id {request_id!r}"
            if problem:
                result.malformed += 1
                result.problems.append(f"{path} line {line}: {problem}")
                continue
            result.labels[request_id] = int(float(label))
    return result


def read_labels_path(path: str) -> Labels:
    """`read_labels` of a CSV file, or of every `*.csv` in a directory (merged; an id
    labelled in two files counts as a duplicate). Raises OSError if there is none."""
    if not os.path.isdir(path):
        return read_labels(path)
    files = sorted(glob.glob(os.path.join(glob.escape(path), "*.csv")))
    if not files:
        raise OSError(f"no label files (*.csv) in {path}")
    merged = Labels({})
    for name in files:
        part = read_labels(name)
        merged.malformed += part.malformed
        merged.problems += part.problems
        for request_id, label in part.labels.items():
            if request_id in merged.labels:
                merged.malformed += 1
                merged.problems.append(f"{name}: duplicate request_id {request_id!r}")
            else:
                merged.labels[request_id] = label
    return merged


def auc(scores: list[float], labels: list[int]) -> float | None:
    """ROC AUC by ranks (ties share their average rank); None with one class."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    positive_ranks = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (positive_ranks - positives * (positives + 1) / 2) / (positives * negatives)


def metrics(pairs: list[tuple[float, int]], threshold: float = config.POSITIVE_THRESHOLD) -> dict:
    """{"labelled", "accuracy", "auc"} of (prediction, label) pairs."""
    if not pairs:
        return {"labelled": 0, "accuracy": None, "auc": None}
    correct = sum(1 for p, y in pairs if (p >= threshold) == bool(y))
    return {
        "labelled": len(pairs),
        "accuracy": correct / len(pairs),
        "auc": auc([p for p, _ in pairs], [y for _, y in pairs]),
    }


def join(
    predictions: list[dict],
    labels: Labels,
    start: float,
    end: float,
    threshold: float = config.POSITIVE_THRESHOLD,
) -> dict:
    """Joins `labels` to logged `predictions` (every logged prediction, any time).

    Returns:
      {"overall": metrics, "versions": {version: metrics}, "counts": {...},
       "problems": [...]} for the predictions logged in `[start, end)`.
    """
    by_id = {p["request_id"]: p for p in predictions if p["request_id"]}
    counts = {
        "labels": len(labels.labels),
        "malformed_labels": labels.malformed,
        "unknown_request_ids": 0,
        "outside_window": 0,
        "joined": 0,
        "no_prediction_value": 0,
    }
    problems = list(labels.problems)
    overall, versions = [], {}
    unknown = []
    for request_id, label in labels.labels.items():
        prediction = by_id.get(request_id)
        if prediction is None:
            counts["unknown_request_ids"] += 1
            unknown.append(request_id)
            continue
        if not start <= prediction["timestamp"] < end:
            counts["outside_window"] += 1
            continue
        if prediction["prediction"] is None:
            counts["no_prediction_value"] += 1
            continue
        counts["joined"] += 1
        pair = (prediction["prediction"], label)
        overall.append(pair)
        versions.setdefault(str(prediction["version"]), []).append(pair)
    in_window = [p for p in predictions if start <= p["timestamp"] < end]
    counts["predictions_in_window"] = len(in_window)
    counts["predictions_without_id"] = sum(1 for p in in_window if not p["request_id"])
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        problems.append(f"{len(unknown)} labels for unknown request ids: {shown}{more}")
    return {
        "overall": metrics(overall, threshold),
        "versions": {v: metrics(p, threshold) for v, p in sorted(versions.items())},
        "counts": counts,
        "problems": problems,
    }
