"""Pipeline definition, runners and lineage queries for the taxi model."""

import core.env  # noqa: F401 - first: the environment TensorFlow needs (legacy Keras)
