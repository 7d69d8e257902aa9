"""Feature kinds of the schema: which distance compares a feature (no TFDV import)."""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import schema_pb2


def is_categorical(feature: schema_pb2.Feature) -> bool:
    """String features and integer features marked categorical (compared by L-infinity)."""
    if feature.type == schema_pb2.BYTES:
        return True
    return feature.type == schema_pb2.INT and feature.int_domain.is_categorical
