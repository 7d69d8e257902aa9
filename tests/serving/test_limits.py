"""Per-request tensor budgets: the totals, and the tensor named when one goes over."""

import numpy as np
import pytest

from serving import limits
from serving.errors import ServingError


def test_charge_arrays_adds_elements_and_decoded_bytes():
    budget = limits.RequestLimits(max_elements=100, max_decoded_bytes=1000).budget()
    strings = np.array([b"abc", b"de"], dtype=object)
    limits.charge_arrays(budget, {"f": np.zeros(3, np.float32), "s": strings})
    assert budget.elements == 5
    assert budget.decoded_bytes == 12 + 2 * 8 + 5  # float32s, pointers, payloads


@pytest.mark.parametrize(
    "caps, named, text",
    [
        ((6, 10**6), "b", "takes the request to 7 elements, over the limit of 6"),
        ((10**6, 20), "b", "takes the request to 56 decoded bytes, over the limit of 20"),
        ((10**6, 100), "c", "takes the request to 104 decoded bytes, over the limit of 100"),
    ],
)
def test_charge_arrays_names_the_tensor_that_goes_over(caps, named, text):
    budget = limits.RequestLimits(*caps).budget()
    arrays = {"a": np.zeros(2, np.int64), "b": np.zeros(5, np.int64), "c": np.zeros(6, np.int64)}
    with pytest.raises(ServingError) as error:
        limits.charge_arrays(budget, arrays)
    assert error.value.message.startswith(f"Tensor {named} (shape [")
    assert text in error.value.message


def test_a_second_charge_counts_what_the_first_added():
    budget = limits.RequestLimits(max_elements=4, max_decoded_bytes=10**6).budget()
    limits.charge_arrays(budget, {"a": np.zeros(3)})
    with pytest.raises(ServingError, match="Tensor b .* 5 elements, over the limit of 4"):
        limits.charge_arrays(budget, {"b": np.zeros(2)})
