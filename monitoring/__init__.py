"""Monitoring of the served model: request logs -> TFDV skew/drift, reports, gauges."""

import core.env  # noqa: F401 - first: the environment TensorFlow needs (legacy Keras)
