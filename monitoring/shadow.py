"""Shadow comparison: the candidate's predictions next to the stable version's, same requests.

Reads the server's shadow records (`--shadow_traffic_share`, format in
serving/shadow.py: one `PredictionLog` per shadow batch, the shadow's outputs
under their aliases, the stable ones as `_stable/<alias>`, per-row request
ids and latencies, the batch's error). Per (stable, shadow) version pair:

* rows mirrored, shadow errors (rows of failed batches) and their rate;
* calls dropped by the server on a full shadow queue (`_shadow_dropped`,
  each record counting those since the model's previous one) and their
  share of the calls sampled for the shadow (a share of rows for one-row
  requests): what the comparison did not see;
* on the rows both versions answered: agreement (both on the same side of
  `threshold`), mean and max absolute difference of the positive-class
  probability (last column of `probabilities`/`scores`/`outputs`, else of
  the model's only float output);
* latency p50/p99 of each: the stable figure is the server latency of the
  row's request (what the client saw), the shadow figure its batch's
  session run time;
* with late labels (CSV request_id,label; monitoring/quality.py): labelled
  rows and both versions' accuracy and AUC on exactly the same requests.

`verdict` turns a comparison into `pass` / `reject` / `insufficient data`
(used by `taxi-monitor shadow` and `watch --shadow-first`).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import prediction_log_pb2

from monitoring import config, outcome, quality
from monitoring.request_logs import log_files
from serving.shadow_record import REQUEST_IDS, SHADOW_ERROR, STABLE_PREFIX

PROBABILITY_ALIASES = ("probabilities", "scores", "outputs")


@dataclasses.dataclass
class ShadowRows:
    """What `read` found: one dict per mirrored row, plus what could not be read."""

    files: list[str]
    rows: list[dict] = dataclasses.field(default_factory=list)
    records: int = 0
    outside: int = 0
    malformed: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


def _positive(outputs, prefix: str = "") -> list | None:
    """Last column of the first of PROBABILITY_ALIASES, else of the only float output."""
    names = [prefix + a for a in PROBABILITY_ALIASES if prefix + a in outputs]
    if not names:
        floats = [
            a
            for a, t in outputs.items()
            if a.startswith(prefix)
            and not a[len(prefix) :].startswith("_")
            and t.dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE)
        ]
        names = floats if len(floats) == 1 else []
    if not names:
        return None
    array = tf.make_ndarray(outputs[names[0]])
    return array.reshape(array.shape[0], -1)[:, -1].astype(float).tolist()


def parse(record: bytes) -> tuple[float, list[dict]]:
    """One shadow record -> (timestamp, rows).

    Raises:
      ValueError: not a shadow record.
    """
    try:
        entry = prediction_log_pb2.PredictionLog.FromString(record)
    except Exception as e:  # protobuf DecodeError
        raise ValueError(f"not a PredictionLog ({e})") from None
    outputs = entry.predict_log.response.outputs
    if entry.WhichOneof("log_type") != "predict_log" or REQUEST_IDS not in outputs:
        raise ValueError(f"not a shadow record (no {REQUEST_IDS} output)")
    ids = [v.decode("utf-8", "replace") for v in tf.make_ndarray(outputs[REQUEST_IDS]).ravel()]
    error = tf.make_ndarray(outputs[SHADOW_ERROR]).item().decode("utf-8", "replace")
    stable = _positive(outputs, STABLE_PREFIX)
    shadow = None if error else _positive(outputs)
    stable_latency = tf.make_ndarray(outputs["_stable_latency_us"]).ravel().tolist()
    shadow_latency = tf.make_ndarray(outputs["_shadow_latency_us"]).ravel().tolist()
    n = len(ids)
    for name, values in (
        ("stable", stable),
        ("shadow", shadow),
        ("_stable_latency_us", stable_latency),
        ("_shadow_latency_us", shadow_latency),
    ):
        if values is not None and len(values) != n:
            raise ValueError(f"{name} has {len(values)} rows, _request_ids {n}")
    dropped = 0
    if "_shadow_dropped" in outputs:  # records of servers before it have none
        dropped = int(tf.make_ndarray(outputs["_shadow_dropped"]).item())
    stable_version = entry.predict_log.request.model_spec.version.value
    shadow_version = entry.log_metadata.model_spec.version.value
    rows = [
        {
            "request_id": ids[i],
            "stable_version": int(stable_version),
            "shadow_version": int(shadow_version),
            "stable": stable[i] if stable is not None else None,
            "shadow": shadow[i] if shadow is not None else None,
            "stable_latency_us": stable_latency[i],
            "shadow_latency_us": shadow_latency[i],
            "error": error,
            "dropped": dropped if i == 0 else 0,  # the record's count, on its first row
        }
        for i in range(n)
    ]
    return float(entry.log_metadata.timestamp_secs), rows


def read(prefix: str, start: float = float("-inf"), end: float = float("inf")) -> ShadowRows:
    """The shadow rows logged in `[start, end)` under `prefix` (a prefix or a directory)."""
    files = log_files(prefix)
    found = ShadowRows(files=files)
    for path in files:
        index = 0
        try:
            for index, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
                try:
                    timestamp, rows = parse(record)
                except ValueError as e:
                    found.malformed += 1
                    found.problems.append(f"{path} record {index}: {e}")
                    continue
                if not start <= timestamp < end:
                    found.outside += 1
                    continue
                found.records += 1
                found.rows.extend(rows)
        except tf.errors.OpError as e:
            found.malformed += 1
            found.problems.append(f"{path} after record {index}: unreadable ({e.message})")
    return found


def _latency(values: list) -> dict:
    if not values:
        return {"p50_ms": None, "p99_ms": None}
    array = np.asarray(values, dtype=float) / 1e3
    return {
        "p50_ms": float(np.percentile(array, 50)),
        "p99_ms": float(np.percentile(array, 99)),
    }


def compare(
    rows: list[dict],
    labels: quality.Labels | None = None,
    threshold: float = config.POSITIVE_THRESHOLD,
):
    """Per version pair "<stable>-><shadow>": the figures of the module docstring."""
    pairs: dict = {}
    for row in rows:
        pairs.setdefault(f"{row['stable_version']}->{row['shadow_version']}", []).append(row)
    result = {}
    for key, group in sorted(pairs.items()):
        both = [r for r in group if r["shadow"] is not None and r["stable"] is not None]
        errors = sum(1 for r in group if r["error"])
        diffs = [abs(r["shadow"] - r["stable"]) for r in both]
        agree = sum(1 for r in both if (r["shadow"] >= threshold) == (r["stable"] >= threshold))
        dropped = sum(r.get("dropped", 0) for r in group)
        entry = {
            "stable_version": group[0]["stable_version"],
            "shadow_version": group[0]["shadow_version"],
            "rows": len(group),
            "compared": len(both),
            "shadow_errors": errors,
            "shadow_error_rate": errors / len(group),
            "dropped": dropped,
            "dropped_share": dropped / (dropped + len(group)),
            "agreement": agree / len(both) if both else None,
            "mean_abs_diff": float(np.mean(diffs)) if diffs else None,
            "max_abs_diff": float(np.max(diffs)) if diffs else None,
            "latency": {
                "stable": _latency([r["stable_latency_us"] for r in group]),
                "shadow": _latency([r["shadow_latency_us"] for r in both]),
            },
            "labelled": 0,
            "stable_quality": None,
            "shadow_quality": None,
        }
        if labels is not None:
            joined = [
                (r, labels.labels[r["request_id"]])
                for r in both
                if r["request_id"] in labels.labels
            ]
            entry["labelled"] = len(joined)
            entry["stable_quality"] = quality.metrics(
                [(r["stable"], y) for r, y in joined], threshold
            )
            entry["shadow_quality"] = quality.metrics(
                [(r["shadow"], y) for r, y in joined], threshold
            )
        result[key] = entry
    return result


@dataclasses.dataclass
class Policy:
    """When a shadow passes: enough rows, few errors, accuracy not clearly lower."""

    min_rows: int = config.SHADOW_MIN_ROWS
    max_error_rate: float = config.SHADOW_MAX_ERROR_RATE
    min_labelled: int = config.SHADOW_MIN_LABELLED
    max_accuracy_drop: float = config.SHADOW_MAX_ACCURACY_DROP


def verdict(entry: dict, policy: Policy | None = None) -> tuple[str, str]:
    """(`pass` | `reject` | `insufficient data`, why) for one `compare` entry."""
    policy = policy or Policy()
    if entry["rows"] < policy.min_rows:
        return "insufficient data", f"{entry['rows']} mirrored rows < {policy.min_rows}"
    if entry["shadow_error_rate"] > policy.max_error_rate:
        return "reject", (
            f"shadow error rate {entry['shadow_error_rate']:.2%} > {policy.max_error_rate:.2%}"
        )
    if entry["labelled"] < policy.min_labelled:
        return "insufficient data", f"{entry['labelled']} labelled rows < {policy.min_labelled}"
    stable = entry["stable_quality"]["accuracy"]
    shadow = entry["shadow_quality"]["accuracy"]
    if shadow < stable - policy.max_accuracy_drop:
        return "reject", (
            f"shadow accuracy {shadow:.4f} < stable {stable:.4f} - {policy.max_accuracy_drop}"
        )
    return "pass", f"shadow accuracy {shadow:.4f} vs stable {stable:.4f} on the same requests"


def markdown(result: dict) -> str:
    """The `taxi-monitor shadow` report."""
    fmt = lambda v, spec=".4f": "n/a" if v is None else format(v, spec)  # noqa: E731
    lines = ["# Shadow vs stable", ""]
    for key, e in result["pairs"].items():
        lines += [
            f"## {key} (stable -> shadow): {e['verdict']}",
            "",
            f"{e['why']}",
            "",
            f"- rows mirrored: {e['rows']}, compared: {e['compared']}, shadow errors: "
            f"{e['shadow_errors']} ({fmt(e['shadow_error_rate'], '.2%')}), dropped on a full "
            f"shadow queue: {e['dropped']} ({fmt(e['dropped_share'], '.2%')})",
            f"- agreement at {result['threshold']}: {fmt(e['agreement'])}; |difference| mean "
            f"{fmt(e['mean_abs_diff'])}, max {fmt(e['max_abs_diff'])}",
            "",
            "| version | p50 ms | p99 ms | labelled | accuracy | AUC |",
            "|---|---|---|---|---|---|",
        ]
        for role in ("stable", "shadow"):
            q = e[f"{role}_quality"] or {}
            lat = e["latency"][role]
            lines.append(
                f"| {role} {e[f'{role}_version']} | {fmt(lat['p50_ms'], '.3f')} | "
                f"{fmt(lat['p99_ms'], '.3f')} | {e['labelled']} | {fmt(q.get('accuracy'))} | "
                f"{fmt(q.get('auc'))} |"
            )
        lines.append("")
    lines.append("Stable latency: the request's server latency; shadow: its batch's run time.")
    if result["problems"]:
        lines += ["", f"## Problems ({len(result['problems'])})", ""]
        lines += [f"- {p}" for p in result["problems"][:20]]
    return "\n".join(lines) + "\n"


def check(
    logs: str,
    labels: str | None = None,
    start: float = float("-inf"),
    end: float = float("inf"),
    threshold: float = config.POSITIVE_THRESHOLD,
    policy: Policy | None = None,
) -> dict:
    """Compares each shadow with its stable version on the mirrored requests of `[start, end)`.

    Args:
      logs: the shadow log prefix or directory; labels: late labels (CSV
        request_id,label or a directory of them), optional.

    Returns:
      the inputs, `records`, `malformed_records`, `pairs` (per stable/shadow
      pair: figures, `verdict`, `why`), `problems` and `outcome` (`BAD_INPUT`
      without rows or with malformed records or labels, `FOUND` when a
      shadow is rejected).
    """
    found = read(logs, start, end)
    problems = list(found.problems)
    late = quality.read_labels_path(labels) if labels else None
    if late is not None:
        problems += late.problems
    pairs = compare(found.rows, late, threshold)
    for entry in pairs.values():
        entry["verdict"], entry["why"] = verdict(entry, policy)
    if not found.files:
        problems.append(f"no shadow log files match {logs!r}")
    elif not found.rows:
        problems.append("no shadow rows in the window")
    bad = not found.rows or found.malformed or (late is not None and late.malformed)
    rejected = any(e["verdict"] == "reject" for e in pairs.values())
    return {
        "logs": logs,
        "labels": labels,
        "start": start,
        "end": end,
        "threshold": threshold,
        "records": found.records,
        "malformed_records": found.malformed,
        "pairs": pairs,
        "problems": problems,
        "outcome": outcome.of(rejected, bool(bad)),
    }


def write_outputs(result: dict, out: str) -> str:
    """Writes `<out>/shadow.json` and `<out>/shadow.md`; returns the report's path."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "shadow.json"), "w") as f:
        json.dump({k: v for k, v in result.items() if k != "outcome"}, f, indent=1)
    path = os.path.join(out, "shadow.md")
    with open(path, "w") as f:
        f.write(markdown(result))
    return path
