"""Feature contract of the taxi model: raw column names, their roles, label rule.

Everything that names a column lives here so the Transform module, the
Trainer module, the serving signatures and the tests agree on one list.
"""

from __future__ import annotations

# Numeric features that are standardised (z-score) by Transform.
DENSE_FLOAT_KEYS: tuple[str, ...] = ("trip_miles", "fare", "trip_seconds")

# Coordinates that are bucketized into quantile buckets.
BUCKET_KEYS: tuple[str, ...] = (
    "pickup_latitude",
    "pickup_longitude",
    "dropoff_latitude",
    "dropoff_longitude",
)
BUCKET_COUNT = 10

# Small integer categories used as identity columns: key -> number of ids.
IDENTITY_KEYS: dict[str, int] = {
    "trip_start_hour": 24,
    "trip_start_day": 8,
    "trip_start_month": 13,
    "pickup_community_area": 78,
    "dropoff_community_area": 78,
}

# Free-form categories that get a vocabulary with out-of-vocabulary buckets.
VOCAB_KEYS: tuple[str, ...] = ("payment_type", "company", "dropoff_census_tract")
VOCAB_SIZE = 1000
OOV_BUCKETS = 10

# Raw columns needed for the label; they are not model inputs and are absent
# from the SERVING environment of the schema.
TIPS_KEY = "tips"
LABEL_KEY = "big_tipper"
TIP_FRACTION = 0.2

# Columns in the data that the model does not use.
UNUSED_KEYS: tuple[str, ...] = ("trip_start_timestamp", "pickup_census_tract")

# Slicing columns for model analysis.
SLICE_KEYS: tuple[str, ...] = ("trip_start_hour", "payment_type")


def transformed_name(key: str) -> str:
    """Name of the Transform output for raw feature ``key``."""
    return f"{key}_xf"


def model_feature_keys() -> list[str]:
    """Raw feature columns the model consumes, in a stable order."""
    return [*DENSE_FLOAT_KEYS, *BUCKET_KEYS, *IDENTITY_KEYS, *VOCAB_KEYS]


def vocab_dimension(key: str) -> int:
    """Number of distinct ids the transformed vocabulary feature can take."""
    del key
    return VOCAB_SIZE + OOV_BUCKETS
