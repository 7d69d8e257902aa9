"""Taxi model code used by the pipeline: features, Transform and Trainer
modules, and custom components (anomalies gate, atomic pusher)."""

import core.env  # noqa: F401 - first: the environment TensorFlow needs (legacy Keras)
