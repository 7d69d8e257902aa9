"""TensorFlow DataType helpers: names as TF prints them and numpy dtypes."""

import numpy as np
from tensorflow.core.framework import types_pb2

# DataTypeString() spellings that differ from the enum's lowercase suffix.
_NAME_OVERRIDES = {types_pb2.DT_HALF: "half"}

NUMPY_DTYPES = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_UINT16: np.uint16,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64,
    types_pb2.DT_BOOL: np.bool_,
    types_pb2.DT_STRING: np.object_,
    types_pb2.DT_HALF: np.float16,
}


def dtype_name(dtype: int) -> str:
    """Returns TF's `DataTypeString` for a DataType enum value (e.g. `float`)."""
    if dtype in _NAME_OVERRIDES:
        return _NAME_OVERRIDES[dtype]
    try:
        return types_pb2.DataType.Name(dtype)[3:].lower()
    except ValueError:
        return f"unknown dtype enum ({dtype})"


def enum_name(dtype: int) -> str:
    """Returns the enum spelling, e.g. `DT_FLOAT`."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return str(dtype)


def numpy_dtype(dtype: int):
    """Returns the numpy dtype used to feed/fetch `dtype`, or None if unsupported."""
    return NUMPY_DTYPES.get(dtype)
