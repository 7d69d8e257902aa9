"""Skew and drift of served traffic (and of consecutive data spans) with TFDV.

Comparators: L-infinity distance for categorical features, Jensen-Shannon
divergence for numeric ones. Thresholds already in the schema win; features
without a comparator get the defaults of monitoring/config.py (`comparator_schema`).

* skew: training statistics of the served model's newest span vs serving;
* drift: the previous window (or span) vs the current one.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from monitoring import config
from monitoring.features import is_categorical

SERVING = "SERVING"

_MEASURES = {
    anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "linf",
    anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "jsd",
    anomalies_pb2.DriftSkewInfo.Measurement.NORMALIZED_ABSOLUTE_DIFFERENCE: "nad",
}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One skew or drift measurement of one feature."""

    kind: str  # "skew" or "drift"
    feature: str
    measure: str  # "linf" or "jsd"
    value: float
    threshold: float

    @property
    def exceeded(self) -> bool:
        return self.value > self.threshold


def load_schema(path: str) -> schema_pb2.Schema:
    """The curated schema (text format)."""
    return tfdv.load_schema_text(path)


def serving_features(schema: schema_pb2.Schema) -> list[schema_pb2.Feature]:
    """Features the schema expects in the SERVING environment."""
    return [f for f in schema.feature if SERVING not in f.not_in_environment]


def comparator_schema(
    schema: schema_pb2.Schema,
    linf: float = config.LINF_THRESHOLD,
    jsd: float = config.JSD_THRESHOLD,
    thresholds: dict[str, dict[str, float]] | None = None,
) -> schema_pb2.Schema:
    """A copy of `schema` with skew and drift comparators on every serving feature.

    A comparator already in the schema keeps its threshold. Otherwise a
    feature gets ``thresholds[kind][feature]`` when given (kind "skew" or
    "drift"; see monitoring/drift_thresholds.py for thresholds that follow the
    window size), else `linf` (categorical) or `jsd` (numeric). Jensen-Shannon
    divergence is computed on TFDV's quantile histograms: its default
    equal-width histograms put a few hundred rows of a long-tailed feature
    (trip_miles, trip_seconds) at a distance of ~0.4 from the very distribution
    they were drawn from, and do not see trip_miles x 1.609.
    """
    result = copy.deepcopy(schema)
    for feature in serving_features(result):
        for kind, field in (("skew", "skew_comparator"), ("drift", "drift_comparator")):
            if feature.HasField(field):
                continue
            comparator = getattr(feature, field)
            override = (thresholds or {}).get(kind, {}).get(feature.name)
            if is_categorical(feature):
                comparator.infinity_norm.threshold = linf if override is None else override
            else:
                divergence = comparator.jensen_shannon_divergence
                divergence.threshold = jsd if override is None else override
                divergence.source.type = schema_pb2.HistogramSelection.QUANTILES
    return result


def rows_to_frame(rows: list[dict], schema: schema_pb2.Schema) -> pd.DataFrame:
    """Rows -> a DataFrame typed by the schema; NaN, None and "" are missing.

    Columns the schema does not know are kept (TFDV then reports them).
    """
    frame = pd.DataFrame(rows)
    types = {f.name: f.type for f in schema.feature}
    for column in frame.columns:
        kind = types.get(column)
        values = frame[column]
        if kind == schema_pb2.BYTES or (kind is None and values.dtype == object):
            frame[column] = values.map(lambda v: None if v in (None, "") or v != v else str(v))
        elif kind == schema_pb2.INT:
            numeric = pd.to_numeric(values, errors="coerce")
            frame[column] = numeric.round().astype("Int64")
        else:
            frame[column] = pd.to_numeric(values, errors="coerce").astype(np.float64)
    return frame


def statistics_from_rows(
    rows: list[dict], schema: schema_pb2.Schema
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of raw feature rows (in memory, no Beam)."""
    if not rows:
        raise ValueError("no rows to compute statistics from")
    return tfdv.generate_statistics_from_dataframe(rows_to_frame(rows, schema))


def _findings(anomalies: anomalies_pb2.Anomalies, kind: str) -> list[Finding]:
    found = []
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        measurements = info.skew_measurements if kind == "skew" else info.drift_measurements
        for m in measurements:
            found.append(
                Finding(kind, feature, _MEASURES.get(m.type, str(m.type)), m.value, m.threshold)
            )
    return found


@dataclasses.dataclass
class Validation:
    """Anomalies (one TFDV proto) and the skew/drift measurements behind them."""

    anomalies: anomalies_pb2.Anomalies
    findings: list[Finding]
    notes: list[str]

    @property
    def anomalous_features(self) -> list[str]:
        return sorted(self.anomalies.anomaly_info)


def validate(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    training: statistics_pb2.DatasetFeatureStatisticsList | None = None,
    previous: statistics_pb2.DatasetFeatureStatisticsList | None = None,
    environment: str | None = SERVING,
) -> Validation:
    """Validates `current` against `schema` (its `environment`), with drift vs
    `previous` and skew vs `training` when given.

    `schema` should carry comparators (`comparator_schema`). TFDV computes
    skew with the training statistics as `statistics`, so skew is a second
    call whose skew anomalies and measurements are merged into the result.
    """
    notes = []
    anomalies = tfdv.validate_statistics(
        current, schema, environment=environment, previous_statistics=previous
    )
    findings = _findings(anomalies, "drift") if previous is not None else []
    if previous is None:
        notes.append("drift not computed: no previous statistics")
    if training is None:
        notes.append("skew not computed: no training statistics")
    else:
        skew = tfdv.validate_statistics(
            training, schema, environment="TRAINING", serving_statistics=current
        )
        findings += _findings(skew, "skew")
        skewed = {f.feature for f in findings if f.kind == "skew" and f.exceeded}
        by_path = {".".join(i.path.step): i for i in anomalies.drift_skew_info}
        for info in skew.drift_skew_info:
            name = ".".join(info.path.step)
            if name in by_path:
                by_path[name].skew_measurements.extend(info.skew_measurements)
            else:
                anomalies.drift_skew_info.add().CopyFrom(info)
        for name in skewed:
            reasons = (
                [
                    r
                    for r in skew.anomaly_info[name].reason
                    if "skew" in r.description.lower() or "serving" in r.description.lower()
                ]
                if name in skew.anomaly_info
                else []
            )
            target = anomalies.anomaly_info[name]
            if not target.path.step:
                target.path.CopyFrom(skew.anomaly_info[name].path)
                target.severity = anomalies_pb2.AnomalyInfo.ERROR
            target.reason.extend(reasons)
            if not target.short_description:
                target.short_description = "Training/serving skew"
                target.description = "; ".join(r.description for r in reasons)
    return Validation(anomalies, sorted(findings, key=lambda f: (f.kind, f.feature)), notes)
