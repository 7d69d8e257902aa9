"""Pipeline definition and runners for the taxi model."""

import core.env  # noqa: F401 - first: the environment TensorFlow needs (legacy Keras)
