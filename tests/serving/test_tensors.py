"""TensorProto conversion: typed fields out, every encoding in."""

import numpy as np
import pytest
import tensorflow as tf

from serving import limits
from serving.errors import Code, ServingError
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


def _declared(shape, dtype=tf.float32, value=1):
    proto = tf.make_tensor_proto(value, dtype=dtype)
    proto.tensor_shape.Clear()
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def test_declared_shape_is_charged_exactly_before_decoding():
    budget = limits.RequestLimits(max_elements=1000, max_decoded_bytes=10**9).budget()
    with pytest.raises(ServingError) as error:
        from_tensor_proto(_declared([2**62, 2**62]), "x", budget)  # wraps to 0 in int64
    assert error.value.code == Code.INVALID_ARGUMENT
    assert error.value.message.startswith(
        f"Tensor x (shape [{2**62},{2**62}], {2**124} elements) takes the request to"
    )
    assert budget.elements == 2**124


def test_budget_is_per_request_over_all_tensors():
    budget = limits.RequestLimits(max_elements=10, max_decoded_bytes=10**9).budget()
    assert from_tensor_proto(_declared([6]), "a", budget).tolist() == [1.0] * 6
    with pytest.raises(ServingError, match=r"^Tensor b \(shape \[5\], 5 elements\)"):
        from_tensor_proto(_declared([5]), "b", budget)


def test_decoded_bytes_count_item_size_and_string_payloads():
    budget = limits.RequestLimits(max_elements=100, max_decoded_bytes=80).budget()
    from_tensor_proto(_declared([10], tf.int64), "i", budget)  # 80 bytes: at the cap
    assert budget.decoded_bytes == 80
    with pytest.raises(ServingError, match="--max_decoded_request_bytes"):
        from_tensor_proto(_declared([1], tf.int8), "j", budget)
    strings = limits.RequestLimits(max_elements=100, max_decoded_bytes=10**9).budget()
    from_tensor_proto(tf.make_tensor_proto([b"abc", b"de"]), "s", strings)
    assert strings.decoded_bytes == 2 * limits.POINTER_BYTES + 5


def test_defaults_follow_max_request_bytes():
    assert limits.RequestLimits.from_flags(1000) == limits.RequestLimits(250, 8000)
    assert limits.RequestLimits.from_flags(1000, 5, 7) == limits.RequestLimits(5, 7)


def test_negative_dimension_is_a_parsing_error():
    with pytest.raises(ValueError, match="negative dimension"):
        from_tensor_proto(_declared([-1, 2]))


def test_context_copies_are_charged_per_example():
    budget = limits.RequestLimits(max_elements=10**6, max_decoded_bytes=1 << 30).budget()
    with pytest.raises(ServingError, match=r"^Tensor examples \(shape \[1000\]"):
        limits.charge_examples(budget, 1000, 4 << 20, 1000 * 10)
    assert budget.decoded_bytes == 1000 * ((4 << 20) + limits.POINTER_BYTES) + 10_000


@pytest.mark.parametrize(
    "dtype, item_bytes",
    [
        (tf.float32, 4),
        (tf.float64, 8),
        (tf.uint8, 1),
        (tf.bool, 1),
        (tf.float16, 2),
        (tf.complex128, 16),
    ],
)
def test_decoded_bytes_of_typed_and_other_dtypes(dtype, item_bytes):
    budget = limits.RequestLimits(max_elements=100, max_decoded_bytes=10**9).budget()
    from_tensor_proto(_declared([3], dtype, value=False if dtype == tf.bool else 0), "t", budget)
    assert budget.decoded_bytes == 3 * item_bytes
