"""A TensorFlow Serving–compatible model server (REST + gRPC) in Python.

The server reproduces TF Serving's client-visible contract (URLs, JSON
dialect, error bodies, status codes, version/label semantics) so that
clients and probes written for `tensorflow/serving` work unchanged.
"""
