"""The shadow record: one batch of mirrored rows as a `PredictionLog`.

Written by serving/shadow_worker.py (or serving/shadow.py's thread) through the
request logger's rotating TFRecord writer; read by `taxi-monitor shadow`
(monitoring/shadow.py). A record holds one batch of N rows:

* `log_metadata.model_spec`: the shadow version; `timestamp_secs`;
  `sampling_config.sampling_rate`: the share;
* `predict_log.request`: `model_spec` of the stable version that answered,
  `inputs`: the rows' inputs;
* `predict_log.response.outputs`: the shadow's outputs under their aliases
  (none when it failed), the stable outputs as `_stable/<alias>`, and
  `_request_ids` (string [N]: `request_logs.row_request_ids` of each request's
  id), `_stable_latency_us` (double [N]: the server latency of the row's
  request), `_shadow_latency_us` (double [N]: the batch's session run time),
  `_shadow_error` (string scalar, "" when it succeeded), `_shadow_dropped`
  (int64 scalar: this model's mirrored calls dropped on a full queue since
  its previous record).
"""

from __future__ import annotations

import numpy as np

from serving.log_encoding import encode_predict_log
from serving.model_info import model_spec

STABLE_PREFIX = "_stable/"
REQUEST_IDS = "_request_ids"
STABLE_LATENCY = "_stable_latency_us"
SHADOW_LATENCY = "_shadow_latency_us"
SHADOW_ERROR = "_shadow_error"
SHADOW_DROPPED = "_shadow_dropped"


def shadow_record(
    model: str,
    stable_version: int,
    shadow_version: int,
    signature_key: str,
    share: float,
    now: int,
    feeds: dict,
    outputs: dict,
    stable_outputs: dict,
    ids: list,
    stable_latency: list,
    latency_us: float,
    error: str,
    dropped: int,
) -> bytes:
    """One batch's serialized `PredictionLog` (the format in this module's docstring)."""
    from tensorflow_serving.apis import logging_pb2
    from tensorflow_serving.config import logging_config_pb2

    shadow_spec = model_spec(model, shadow_version, signature_key)
    metadata = logging_pb2.LogMetadata(
        model_spec=shadow_spec,
        sampling_config=logging_config_pb2.SamplingConfig(sampling_rate=share),
        saved_model_tags=["serve"],
    )
    response = dict(outputs)
    response[REQUEST_IDS] = np.array(ids, dtype=object)
    response[STABLE_LATENCY] = np.array(stable_latency, np.float64)
    response[SHADOW_LATENCY] = np.full(len(ids), latency_us, np.float64)
    response[SHADOW_ERROR] = np.array(error.encode(), dtype=object)
    response[SHADOW_DROPPED] = np.array(dropped, np.int64)
    response.update({STABLE_PREFIX + a: v for a, v in stable_outputs.items()})
    return encode_predict_log(
        model_spec(model, stable_version, signature_key).SerializeToString(),
        metadata.SerializeToString(),
        now,
        feeds,
        response,
        response_spec_bytes=shadow_spec.SerializeToString(),
    )


def row_abs_diff(shadow: dict, stable: dict) -> np.ndarray:
    """Per row, the largest |shadow - stable| over the float outputs both have."""
    worst = None
    for alias, ours in shadow.items():
        theirs = stable.get(alias)
        if theirs is None or ours.shape != theirs.shape or ours.dtype.kind != "f" or not ours.ndim:
            continue
        diff = np.abs(ours.astype(np.float64) - theirs).reshape(ours.shape[0], -1).max(axis=1)
        worst = diff if worst is None else np.maximum(worst, diff)
    return np.zeros(0) if worst is None else worst
