"""Error rate and p99 latency from the server's Prometheus exposition.

Reads `/monitoring/prometheus/metrics` (or a saved copy): request counts by
status (`:tensorflow:serving:request_count`) and the latency histogram
(`:tensorflow:serving:request_latency`, microseconds). Counters are
cumulative since the server started; `delta` subtracts an earlier snapshot so
rates cover the time between two checks (a restart, i.e. a counter going
down, falls back to the new snapshot).
"""

from __future__ import annotations

import math

import requests
from prometheus_client.parser import text_string_to_metric_families

REQUESTS = ":tensorflow:serving:request_count"
LATENCY_BUCKET = ":tensorflow:serving:request_latency_bucket"
VERSION_REQUESTS = ":serving:model_version_request_count"
VERSION_LATENCY_BUCKET = ":serving:model_version_request_latency_bucket"


def _name(sample) -> str:
    """Sample name without the `_total` the parser adds to typed counters."""
    return sample.name.removesuffix("_total")


def snapshot(text: str, model: str) -> dict:
    """{"requests", "errors", "buckets": {le: cumulative count}} of one model."""
    result = {"requests": 0.0, "errors": 0.0, "buckets": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model_name") != model:
                continue
            if _name(sample) == REQUESTS:
                result["requests"] += sample.value
                if sample.labels.get("status") != "OK":
                    result["errors"] += sample.value
            elif sample.name == LATENCY_BUCKET:
                le = sample.labels["le"]
                result["buckets"][le] = result["buckets"].get(le, 0.0) + sample.value
    return result


def fetch(url: str, timeout: float = 5.0) -> str:
    """The exposition text at `url` (raises requests.RequestException)."""
    response = requests.get(url, timeout=timeout)
    response.raise_for_status()
    return response.text


def read(metrics_url: str | None, metrics_file: str | None) -> str | None:
    """The server's metrics exposition from its URL or a saved file (None without either).

    Raises:
      OSError, requests.RequestException: it cannot be read.
    """
    if metrics_url:
        return fetch(metrics_url)
    if metrics_file:
        with open(metrics_file) as f:
            return f.read()
    return None


def delta(current: dict, previous: dict | None) -> dict:
    """`current - previous`, or `current` when there is no usable previous snapshot."""
    if not previous or current["requests"] < previous.get("requests", 0):
        return current
    return {
        "requests": current["requests"] - previous["requests"],
        "errors": current["errors"] - previous["errors"],
        "buckets": {
            le: n - previous["buckets"].get(le, 0.0) for le, n in current["buckets"].items()
        },
    }


def error_rate(snap: dict) -> float | None:
    """Errors / requests, None without requests."""
    return snap["errors"] / snap["requests"] if snap["requests"] else None


def latency_quantile_ms(snap: dict, q: float = 0.99) -> float | None:
    """Upper bucket bound (ms) holding the `q` quantile, None without observations."""
    buckets = sorted((float(le), n) for le, n in snap["buckets"].items())
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    for bound, cumulative in buckets:
        if cumulative >= q * total:
            return bound / 1000.0 if not math.isinf(bound) else math.inf
    return math.inf


def version_snapshots(text: str, model: str) -> dict[str, dict]:
    """Per serving version of `model`: a snapshot like `snapshot` (our server's
    `:serving:model_version_*` series; TF Serving has no per-version latency)."""
    result: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model_name") != model or "version" not in sample.labels:
                continue
            snap = result.setdefault(
                sample.labels["version"], {"requests": 0.0, "errors": 0.0, "buckets": {}}
            )
            if _name(sample) == VERSION_REQUESTS:
                snap["requests"] += sample.value
                if sample.labels.get("status") != "OK":
                    snap["errors"] += sample.value
            elif sample.name == VERSION_LATENCY_BUCKET:
                le = sample.labels["le"]
                snap["buckets"][le] = snap["buckets"].get(le, 0.0) + sample.value
    return result


def version_summary(text: str, model: str) -> dict[str, dict]:
    """Per version: {"requests", "errors", "p50_ms", "p95_ms", "p99_ms"}."""
    return {
        version: {
            "requests": int(snap["requests"]),
            "errors": int(snap["errors"]),
            **{f"p{int(q * 100)}_ms": latency_quantile_ms(snap, q) for q in (0.5, 0.95, 0.99)},
        }
        for version, snap in version_snapshots(text, model).items()
    }
