"""numpy <-> TensorProto with typed repeated fields (as TF Serving answers).

TF Serving fills `float_val`, `int64_val`, ... (`Tensor::AsProtoField`), not
`tensor_content`; clients such as upstream's tests read `float_val` directly.
"""

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.limits import POINTER_BYTES, Budget

_TYPED = {
    np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
    np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
    np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
    np.dtype(np.int16): (types_pb2.DT_INT16, "int_val"),
    np.dtype(np.int8): (types_pb2.DT_INT8, "int_val"),
    np.dtype(np.uint8): (types_pb2.DT_UINT8, "int_val"),
    np.dtype(np.uint16): (types_pb2.DT_UINT16, "int_val"),
    np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
    np.dtype(np.uint32): (types_pb2.DT_UINT32, "uint32_val"),
    np.dtype(np.uint64): (types_pb2.DT_UINT64, "uint64_val"),
    np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val"),
}


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Converts an ndarray into a TensorProto using typed value fields."""
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, array)
    return proto


def fill_tensor_proto(proto: tensor_pb2.TensorProto, array: np.ndarray) -> None:
    """Writes `array` into an empty `proto` in place (e.g. a map entry: no copy)."""
    array = np.asarray(array)
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add(size=size)
    flat = array.ravel()
    if array.dtype.kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        for chunk in _chunks(flat):
            if all(type(v) is bytes for v in chunk):
                proto.string_val.extend(chunk)
            else:  # str or other objects
                proto.string_val.extend(
                    v if isinstance(v, bytes) else str(v).encode() for v in chunk
                )
        return
    if array.dtype == np.float16:
        proto.dtype, field = types_pb2.DT_HALF, proto.half_val
        flat = flat.view(np.uint16)
    else:
        proto.dtype, name = _TYPED[array.dtype]
        field = getattr(proto, name)
    for chunk in _chunks(flat):
        field.extend(chunk)


def _chunks(flat: np.ndarray):
    """Python lists of at most `_CHUNK` values (a whole big tensor as Python
    objects would take ~8x its own size)."""
    for start in range(0, flat.size, _CHUNK):
        yield flat[start : start + _CHUNK].tolist()


_CHUNK = 1 << 16
_FIELDS = {dtype: (field, np_dtype) for np_dtype, (dtype, field) in _TYPED.items()}
_ITEMSIZES = {dtype: np_dtype.itemsize for np_dtype, (dtype, _) in _TYPED.items()}


def _decoded_bytes(proto: tensor_pb2.TensorProto, elements: int) -> int:
    """Bytes `proto` decodes to: elements x item size (strings: pointers + payload)."""
    dtype = proto.dtype
    if dtype == types_pb2.DT_STRING:
        return elements * POINTER_BYTES + sum([len(v) for v in proto.string_val])
    itemsize = _ITEMSIZES.get(dtype)
    if itemsize is None:
        try:
            itemsize = tf.dtypes.as_dtype(dtype).size
        except TypeError:
            raise ValueError(f"unsupported dtype {dtype}") from None
    return elements * itemsize


def from_tensor_proto(
    proto: tensor_pb2.TensorProto, name: str = "tensor", budget: Budget = None
) -> np.ndarray:
    """Converts a TensorProto (typed fields or tensor_content) into an ndarray.

    Common dtypes are decoded with numpy directly (a single value fills the
    whole shape, as in TF); anything else goes through `tf.make_ndarray`.
    The declared shape is charged to `budget` before anything is allocated.

    Raises:
      ServingError: INVALID_ARGUMENT when the tensor passes the budget's caps.
      ValueError: a negative dimension or unknown rank, or an unsupported dtype.
    """
    shape_proto = proto.tensor_shape
    if shape_proto.unknown_rank:
        raise ValueError("unknown rank")
    shape = tuple([d.size for d in shape_proto.dim])
    if shape and min(shape) < 0:
        raise ValueError(f"negative dimension in shape {list(shape)}")
    size = math.prod(shape)
    if budget is not None:
        budget.charge(name, shape, size, _decoded_bytes(proto, size))
    dtype = proto.dtype
    if dtype == types_pb2.DT_STRING:
        values = list(proto.string_val)
        if len(values) == size:
            array = np.empty(size, dtype=object)
            array[:] = values
            return array.reshape(shape)
    elif dtype in _FIELDS and dtype != types_pb2.DT_UINT16:
        field, np_dtype = _FIELDS[dtype]
        content = proto.tensor_content
        if content:
            array = np.frombuffer(content, dtype=np_dtype)
            if array.size == size:
                return array.reshape(shape)
        else:
            values = getattr(proto, field)
            count = len(values)
            if count == size:  # values[:] is a list: numpy converts it in one pass
                return np.array(values[:], dtype=np_dtype).reshape(shape)
            if count == 1:
                return np.full(shape, values[0], dtype=np_dtype)
    array = tf.make_ndarray(proto)
    if dtype == types_pb2.DT_STRING:
        array = array.astype(object)
    return array
