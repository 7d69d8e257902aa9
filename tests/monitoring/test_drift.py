"""Comparators from the schema, statistics of rows, skew and drift by TFDV."""

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2

from monitoring import drift, drift_thresholds
from monitoring.cli import DEFAULT_SCHEMA


@pytest.fixture(scope="module")
def schema():
    return drift.comparator_schema(drift.load_schema(DEFAULT_SCHEMA), linf=0.1, jsd=0.1)


def _feature(schema, name):
    return next(f for f in schema.feature if f.name == name)


def test_comparators_linf_for_categoricals_jsd_for_numerics(schema):
    for name in ("payment_type", "company"):
        feature = _feature(schema, name)
        assert feature.skew_comparator.infinity_norm.threshold == 0.1
        assert feature.drift_comparator.infinity_norm.threshold == 0.1
    for name in ("fare", "trip_miles", "trip_seconds"):
        feature = _feature(schema, name)
        assert feature.skew_comparator.jensen_shannon_divergence.threshold == 0.1
        assert feature.drift_comparator.jensen_shannon_divergence.threshold == 0.1
    assert not _feature(schema, "tips").HasField("drift_comparator")  # not served


def test_thresholds_in_the_schema_win():
    base = drift.load_schema(DEFAULT_SCHEMA)
    _feature(base, "fare").drift_comparator.jensen_shannon_divergence.threshold = 0.5
    result = drift.comparator_schema(base, jsd=0.1)
    assert _feature(result, "fare").drift_comparator.jensen_shannon_divergence.threshold == 0.5
    assert _feature(result, "fare").skew_comparator.jensen_shannon_divergence.threshold == 0.1


def test_rows_to_frame_types_and_missing(schema):
    frame = drift.rows_to_frame(
        [
            {"fare": 1.5, "company": "", "trip_seconds": 3.0, "payment_type": "Cash"},
            {"fare": float("nan"), "company": "Flash", "trip_seconds": None, "payment_type": None},
        ],
        schema,
    )
    assert frame["company"].tolist() == [None, "Flash"]
    assert str(frame["trip_seconds"].dtype) == "Int64"
    assert frame["fare"].isna().tolist() == [False, True]


def test_no_skew_or_drift_on_same_distribution(make_rows):
    # 300-row samples differ by sampling noise: thresholds for that window size.
    schema = drift_thresholds.window_comparator_schema(drift.load_schema(DEFAULT_SCHEMA), 300, 300)
    stats = drift.statistics_from_rows(make_rows(300, seed=1), schema)
    other = drift.statistics_from_rows(make_rows(300, seed=2), schema)
    result = drift.validate(other, schema, training=stats, previous=stats)
    assert {f.kind for f in result.findings} == {"skew", "drift"}
    assert [f for f in result.findings if f.exceeded] == []
    assert result.anomalous_features == []


def test_skew_and_drift_detected(schema, make_rows):
    normal = drift.statistics_from_rows(make_rows(300, seed=1), schema)
    shifted = drift.statistics_from_rows(make_rows(300, seed=2, shift=True), schema)
    result = drift.validate(shifted, schema, training=normal, previous=normal)
    exceeded = {(f.kind, f.feature, f.measure) for f in result.findings if f.exceeded}
    assert {
        ("skew", "fare", "jsd"),
        ("drift", "fare", "jsd"),
        ("skew", "payment_type", "linf"),
        ("drift", "payment_type", "linf"),
    } <= exceeded
    assert {"fare", "payment_type"} <= set(result.anomalous_features)
    descriptions = " ".join(r.description for r in result.anomalies.anomaly_info["fare"].reason)
    assert "training and serving" in descriptions and "current and previous" in descriptions
    info = {".".join(i.path.step): i for i in result.anomalies.drift_skew_info}
    assert info["fare"].skew_measurements and info["fare"].drift_measurements
    assert result.anomalies.anomaly_info["fare"].severity == anomalies_pb2.AnomalyInfo.ERROR


def test_serving_environment_does_not_require_label(schema, make_rows):
    stats = drift.statistics_from_rows(make_rows(50), schema)
    result = drift.validate(stats, schema)
    assert "tips" not in result.anomalous_features
    assert result.notes == [
        "drift not computed: no previous statistics",
        "skew not computed: no training statistics",
    ]


def test_no_rows_is_an_error(schema):
    with pytest.raises(ValueError, match="no rows"):
        drift.statistics_from_rows([], schema)
