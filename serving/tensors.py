"""numpy <-> TensorProto with typed repeated fields (as TF Serving answers).

TF Serving fills `float_val`, `int64_val`, ... (`Tensor::AsProtoField`), not
`tensor_content`; clients such as upstream's tests read `float_val` directly.
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

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
    if array.dtype.kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        values = array.ravel().tolist()
        try:
            proto.string_val.extend(values)
        except TypeError:  # str or other objects
            proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in values)
        return
    if array.dtype == np.float16:
        proto.dtype = types_pb2.DT_HALF
        proto.half_val.extend(array.ravel().view(np.uint16).tolist())
        return
    dtype, field = _TYPED[array.dtype]
    proto.dtype = dtype
    getattr(proto, field).extend(array.ravel().tolist())


_FIELDS = {dtype: (field, np_dtype) for np_dtype, (dtype, field) in _TYPED.items()}


def from_tensor_proto(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Converts a TensorProto (typed fields or tensor_content) into an ndarray.

    Common dtypes are decoded with numpy directly (a single value fills the
    whole shape, as in TF); anything else goes through `tf.make_ndarray`.
    """
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if proto.dtype == types_pb2.DT_STRING:
        values = list(proto.string_val)
        if len(values) == size:
            array = np.empty(size, dtype=object)
            array[:] = values
            return array.reshape(shape)
    elif proto.dtype in _FIELDS and proto.dtype != types_pb2.DT_UINT16:
        field, np_dtype = _FIELDS[proto.dtype]
        if proto.tensor_content:
            array = np.frombuffer(proto.tensor_content, dtype=np_dtype)
            if array.size == size:
                return array.reshape(shape)
        else:
            values = getattr(proto, field)
            if len(values) == size:
                return np.array(values, dtype=np_dtype).reshape(shape)
            if len(values) == 1:
                return np.full(shape, values[0], dtype=np_dtype)
    array = tf.make_ndarray(proto)
    if proto.dtype == types_pb2.DT_STRING:
        array = array.astype(object)
    return array
