"""TensorProto conversion: typed fields out, every encoding in."""

import numpy as np
import pytest
import tensorflow as tf

from serving.tensors import from_tensor_proto, to_tensor_proto


@pytest.mark.parametrize(
    "array",
    [
        np.array([[1.5], [2.0]], np.float32),
        np.array([1, 2, 3], np.int64),
        np.array([True, False]),
        np.array([b"a", b"bc"], dtype=object),
        np.array(3.0, np.float64),
        np.zeros((0, 2), np.int32),
    ],
)
def test_round_trip_uses_typed_fields(array):
    proto = to_tensor_proto(array)
    assert proto.tensor_content == b""
    back = from_tensor_proto(proto)
    assert back.shape == array.shape and back.tolist() == array.tolist()


@pytest.mark.parametrize(
    "value, dtype",
    [
        ([[1.0, 2.0]], tf.float32),
        ([1, 2], tf.int32),
        (["x", "y"], tf.string),
        ([1, 2], tf.uint8),
    ],
)
def test_reads_tensor_content_and_tf_protos(value, dtype):
    proto = tf.make_tensor_proto(value, dtype=dtype)
    assert from_tensor_proto(proto).tolist() == tf.make_ndarray(proto).tolist()


def test_single_value_fills_shape():
    proto = tf.make_tensor_proto(7.0, dtype=tf.float32, shape=[2, 2])
    assert from_tensor_proto(proto).tolist() == [[7.0, 7.0], [7.0, 7.0]]
