"""Prometheus gauges in the node exporter's textfile format.

`write_textfile` writes `<path>` atomically (prometheus_client writes a temp
file and renames it), so the node exporter's textfile collector
(`--collector.textfile.directory`) never reads a half-written file.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from monitoring.drift import Finding

PREFIX = "taxi_monitor"


def registry_for(
    scope: str,
    findings: list[Finding],
    anomalous_features: list[str],
    counts: dict[str, int],
    timestamp: float,
) -> CollectorRegistry:
    """Gauges of one monitor run; `scope` is e.g. "window" or "spans".

    `counts` holds record counts by status (ok, malformed, outside_window).
    """
    registry = CollectorRegistry()
    distance = Gauge(
        f"{PREFIX}_feature_distance",
        "Skew/drift distance of a feature",
        ["scope", "kind", "feature", "measure"],
        registry=registry,
    )
    threshold = Gauge(
        f"{PREFIX}_feature_threshold",
        "Threshold of the distance",
        ["scope", "kind", "feature", "measure"],
        registry=registry,
    )
    exceeded = Gauge(
        f"{PREFIX}_features_exceeded",
        "Features above their threshold",
        ["scope", "kind"],
        registry=registry,
    )
    anomalies = Gauge(
        f"{PREFIX}_anomalous_features", "Features with a TFDV anomaly", ["scope"], registry=registry
    )
    records = Gauge(
        f"{PREFIX}_records", "Request log records by status", ["scope", "status"], registry=registry
    )
    last = Gauge(
        f"{PREFIX}_last_run_timestamp_seconds",
        "End of the monitored window",
        ["scope"],
        registry=registry,
    )
    for kind in ("skew", "drift"):
        exceeded.labels(scope, kind).set(sum(1 for f in findings if f.kind == kind and f.exceeded))
    for f in findings:
        distance.labels(scope, f.kind, f.feature, f.measure).set(f.value)
        threshold.labels(scope, f.kind, f.feature, f.measure).set(f.threshold)
    anomalies.labels(scope).set(len(anomalous_features))
    for status, count in counts.items():
        records.labels(scope, status).set(count)
    last.labels(scope).set(timestamp)
    return registry


def write_textfile(path: str, registry: CollectorRegistry) -> str:
    write_to_textfile(path, registry)
    return path


def quality_registry(result: dict, timestamp: float) -> CollectorRegistry:
    """Gauges of a live quality run (`quality.join` result); version "all" is overall."""
    registry = CollectorRegistry()
    accuracy = Gauge(
        f"{PREFIX}_live_accuracy", "Accuracy on late labels", ["version"], registry=registry
    )
    auc = Gauge(f"{PREFIX}_live_auc", "ROC AUC on late labels", ["version"], registry=registry)
    labelled = Gauge(
        f"{PREFIX}_live_labelled", "Predictions joined to a label", ["version"], registry=registry
    )
    labels = Gauge(f"{PREFIX}_labels", "Label rows by outcome", ["status"], registry=registry)
    last = Gauge(f"{PREFIX}_live_quality_timestamp_seconds", "End of the window", registry=registry)
    for version, values in [("all", result["overall"]), *result["versions"].items()]:
        labelled.labels(version).set(values["labelled"])
        if values["accuracy"] is not None:
            accuracy.labels(version).set(values["accuracy"])
        if values["auc"] is not None:
            auc.labels(version).set(values["auc"])
    for status, count in result["counts"].items():
        labels.labels(status).set(count)
    last.set(timestamp)
    return registry
