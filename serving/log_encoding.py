"""Serialized `PredictionLog`s of predict calls, encoded without building protos.

A request-log record of the taxi model holds about 17 small tensors. Building
it as protobuf objects costs ~15 Python-level calls per tensor (map entry,
dims, dtype, values) and was ~75% of the logging cost per record. Here the
parts that repeat (each tensor's dtype and shape, the model spec and the log
metadata without its timestamp) are serialized once by protobuf and cached;
per record only the values are encoded, in the typed fields TF Serving
writes (`float_val`, `int64_val`, ... packed; `string_val`). The result
parses to the same `PredictionLog` as the protobuf-built one
(tests/serving/test_request_log.py checks it).
Field numbers come from the proto descriptors, not from constants.
"""

from __future__ import annotations

import functools

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import logging_pb2, predict_pb2, prediction_log_pb2

from serving.tensors import _TYPED

_LEN, _VARINT = 2, 0


def _number(message, field: str) -> int:
    return message.DESCRIPTOR.fields_by_name[field].number


_REQUEST_SPEC = _number(predict_pb2.PredictRequest, "model_spec")
_REQUEST_INPUTS = _number(predict_pb2.PredictRequest, "inputs")
_REQUEST_CLIENT_ID = _number(predict_pb2.PredictRequest, "client_id")
_RESPONSE_SPEC = _number(predict_pb2.PredictResponse, "model_spec")
_RESPONSE_OUTPUTS = _number(predict_pb2.PredictResponse, "outputs")
_LOG_REQUEST = _number(prediction_log_pb2.PredictLog, "request")
_LOG_RESPONSE = _number(prediction_log_pb2.PredictLog, "response")
_METADATA = _number(prediction_log_pb2.PredictionLog, "log_metadata")
_PREDICT_LOG = _number(prediction_log_pb2.PredictionLog, "predict_log")
_TIMESTAMP = _number(logging_pb2.LogMetadata, "timestamp_secs")
_STRING_VAL = _number(tensor_pb2.TensorProto, "string_val")
_HALF_VAL = _number(tensor_pb2.TensorProto, "half_val")
_FIXED = {np.dtype(np.float32): "<f4", np.dtype(np.float64): "<f8"}
_TYPED_FIELDS = {  # numpy dtype -> (DataType, TensorProto field number)
    np_dtype: (dtype, _number(tensor_pb2.TensorProto, name))
    for np_dtype, (dtype, name) in _TYPED.items()
}
_MASK = (1 << 64) - 1  # negative integers are varints of their 64-bit two's complement


_ONE_BYTE = [bytes([i]) for i in range(0x80)]  # most varints are short lengths and tags


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if 0 < value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


@functools.lru_cache(maxsize=4096)
def _head(dtype: int, shape: tuple) -> bytes:
    """The serialized dtype and shape of a TensorProto."""
    return tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]
        ),
    ).SerializeToString()


@functools.lru_cache(maxsize=1024)
def _key(alias: str) -> bytes:
    return _field(1, alias.encode())


def encode_tensor(array: np.ndarray) -> bytes:
    """A serialized TensorProto of `array` (strings typed, numbers as tensor_content)."""
    array = np.asarray(array)
    if array.dtype.kind in "OSU":
        head = _head(types_pb2.DT_STRING, array.shape)
        tag = _varint(_STRING_VAL << 3 | _LEN)
        values = array.ravel().tolist()
        encoded = _repeated_short_bytes(values, tag)
        if encoded is not None:
            return head + b"".join(map(encoded.__getitem__, values))
        lengths = list(map(len, values))
        if not values or (max(lengths) < 0x80 and set(map(type, values)) == {bytes}):
            parts = [tag] * (3 * len(values))  # all short bytes: no Python call per value
            parts[1::3] = map(_ONE_BYTE.__getitem__, lengths)
            parts[2::3] = values
            return head + b"".join(parts)
        parts = [head]
        for value in values:
            if not isinstance(value, bytes):
                value = str(value).encode()
            parts += (tag, _varint(len(value)), value)
        return b"".join(parts)
    if array.dtype == np.float16:
        dtype, number = types_pb2.DT_HALF, _HALF_VAL
        array = array.view(np.uint16)
    else:
        dtype, number = _TYPED_FIELDS[array.dtype]
    head = _head(dtype, array.shape)
    if not array.size:
        return head
    fixed = _FIXED.get(array.dtype)
    if fixed is not None:
        packed = array.astype(fixed, copy=False).tobytes()
    else:
        packed = b"".join(_varint(int(v) & _MASK) for v in array.ravel().tolist())
    return head + _field(number, packed)


def _repeated_short_bytes(values: list, tag: bytes):
    """{value: its encoded `string_val` field} when `values` are bytes shorter
    than 128 and at most a quarter of them distinct (categorical inputs, empty
    request ids): each distinct value is encoded once and the tensor is one
    `join` over the lookups. Else None (unhashable or other values: the
    general paths)."""
    try:
        distinct = set(values)
    except TypeError:
        return None
    if len(distinct) * 4 > len(values) or set(map(type, distinct)) - {bytes}:
        return None
    if distinct and max(map(len, distinct)) >= 0x80:
        return None
    return {value: tag + _ONE_BYTE[len(value)] + value for value in distinct}


def _map(number: int, tensors: dict) -> bytes:
    return b"".join(
        _field(number, _key(alias) + _field(2, encode_tensor(array)))
        for alias, array in tensors.items()
    )


def encode_predict_log(
    spec_bytes: bytes,
    metadata_bytes: bytes,
    timestamp: int,
    feeds,
    outputs,
    client_id=b"",
    response_spec_bytes: bytes = None,
) -> bytes:
    """A serialized `PredictionLog` of one predict call.

    Args:
      spec_bytes: the serialized ModelSpec (name, version, signature).
      metadata_bytes: the serialized LogMetadata without `timestamp_secs`.
      timestamp: `timestamp_secs` (unix seconds).
      feeds: alias -> input array; outputs: alias -> output array.
      client_id: the request id (empty: none).
      response_spec_bytes: the response's ModelSpec when it differs from the
        request's (a shadow record: the version that answered the client
        is the request's, the shadow version the response's).
    """
    request = _field(_REQUEST_SPEC, spec_bytes) + _map(_REQUEST_INPUTS, feeds)
    if client_id:
        request += _field(_REQUEST_CLIENT_ID, client_id)
    if response_spec_bytes is None:
        response_spec_bytes = spec_bytes
    response = _field(_RESPONSE_SPEC, response_spec_bytes) + _map(_RESPONSE_OUTPUTS, outputs)
    metadata = metadata_bytes + _varint(_TIMESTAMP << 3 | _VARINT) + _varint(timestamp)
    log = _field(_LOG_REQUEST, request) + _field(_LOG_RESPONSE, response)
    return _field(_METADATA, metadata) + _field(_PREDICT_LOG, log)
