"""Warm-up: replay a version's ``assets.extra/tf_serving_warmup_requests`` before serving it.

As TF Serving does, each record (a ``PredictionLog``) is run against the new
version while it loads; a failing record fails the load. Records may be
predict, classify, regress or multi-inference logs.
"""

import os

import tensorflow as tf

from serving import inference
from serving.errors import Code, ServingError
from serving.servable import DEFAULT_SIGNATURE, Servable, serialize_input

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000


def warmup(servable: Servable, iterations: int = 1) -> int:
    """Replays `assets.extra/tf_serving_warmup_requests` against `servable`.

    Args:
      servable: the freshly loaded version.
      iterations: how many times each record is replayed (at least once).

    Returns:
      The number of records read (0 when there is no warmup file).

    Raises:
      ServingError: when a warmup request fails (the load fails, as upstream).
    """
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(servable.path, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return 0
    count = 0
    for record in tf.compat.v1.io.tf_record_iterator(path):
        count += 1
        if count > MAX_WARMUP_RECORDS:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}",
            )
        entry = prediction_log_pb2.PredictionLog.FromString(record)
        for _ in range(max(1, iterations)):
            _replay(servable, entry)
    return count


def _replay(servable: Servable, entry) -> None:
    kind = entry.WhichOneof("log_type")
    if kind == "predict_log":
        request = entry.predict_log.request
        signature = servable.signatures.get(request.model_spec.signature_name or DEFAULT_SIGNATURE)
        if signature is None:
            raise ServingError(Code.INVALID_ARGUMENT, "Warmup signature not found")
        feeds = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        servable.run(signature, feeds)
    elif kind in ("classify_log", "regress_log"):
        request = getattr(entry, kind).request
        signature = servable.signatures.get(request.model_spec.signature_name or DEFAULT_SIGNATURE)
        if signature is None or len(signature.inputs) != 1:
            raise ServingError(Code.INVALID_ARGUMENT, "Warmup signature not usable")
        examples = serialize_input(request.input)
        alias = next(iter(signature.inputs))
        servable.run(signature, {alias: examples})
    elif kind == "multi_inference_log":
        request = entry.multi_inference_log.request
        _, signature = inference.multi_inference_plan(servable, request)
        examples = serialize_input(request.input)
        servable.run(signature, {alias: examples for alias in signature.inputs})
    else:
        raise ServingError(Code.UNIMPLEMENTED, f"Unsupported log_type for warmup: {kind}")
