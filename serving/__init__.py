"""A TensorFlow Serving–compatible model server (REST + gRPC) in Python.

The server reproduces TF Serving's client-visible contract (URLs, JSON
dialect, error bodies, status codes, version/label semantics) so that
clients and probes written for `tensorflow/serving` work unchanged.
"""

import core.env  # noqa: F401 - first: the environment TensorFlow needs (legacy Keras)
