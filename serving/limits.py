"""Per-request caps on decoded tensors, checked before anything is allocated.

A request's wire size says little about what decoding it costs: a 35-byte
Predict can declare shape `[4000000000, 1]` with one `float_val` (TF
broadcasts the value to the whole shape), and a classify request's context
is copied into every example. So every tensor's element count and decoded
size are computed from its declared shape (exact Python integers, no int64
wrap-around) and charged to a per-request `Budget` before numpy or protobuf
allocates them; going over answers INVALID_ARGUMENT naming the tensor.
(REST JSON tensors, whose size the body already bounds, are charged right
after decoding: `charge_arrays`, or `charge_tensors` for rows whose arrays
the batch thread builds later.)

Defaults are tied to `--max_request_bytes` (64 MiB): one element per 4
request bytes (a packed float32's wire size; 16 Mi elements) and eight
decoded bytes per request byte (an int64 sent as a one-byte varint decodes
to 8 bytes; 512 MiB). Under a 1.5 GB memory limit the server answers a
broadcast [16 Mi, 1] float request (output included) in ~6 s on the dev VM;
[50 M, 1], within a one-element-per-byte cap, crashed it in the response
encoding.
"""

import dataclasses
import math

from serving.errors import invalid

REQUEST_BYTES_PER_ELEMENT = 4
DECODED_BYTES_PER_REQUEST_BYTE = 8
POINTER_BYTES = 8  # one object-array slot per string element


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """Caps on one request's decoded tensors.

    Attributes:
      max_elements: total elements over all tensors of a request.
      max_decoded_bytes: total bytes of the decoded tensors (numeric data,
        string payloads plus one pointer per string element).
    """

    max_elements: int
    max_decoded_bytes: int

    @classmethod
    def from_flags(cls, max_request_bytes: int, max_elements: int = 0, max_decoded: int = 0):
        """Limits from the flags; 0 means "derive from `max_request_bytes`"."""
        return cls(
            max_elements=max_elements or max_request_bytes // REQUEST_BYTES_PER_ELEMENT,
            max_decoded_bytes=max_decoded or DECODED_BYTES_PER_REQUEST_BYTE * max_request_bytes,
        )

    def budget(self) -> "Budget":
        """A fresh budget for one request."""
        return Budget(self)


UNLIMITED = RequestLimits(max_elements=2**62, max_decoded_bytes=2**62)


class Budget:
    """What one request has decoded so far, against its `RequestLimits`."""

    __slots__ = ("limits", "elements", "decoded_bytes")

    def __init__(self, limits: RequestLimits):
        self.limits = limits
        self.elements = 0
        self.decoded_bytes = 0

    def charge(self, name: str, shape, elements: int, decoded_bytes: int) -> None:
        """Adds one tensor; raises INVALID_ARGUMENT naming it when a cap is passed.

        Args:
          name: the tensor's alias (or "examples"), used in the message.
          shape: its declared shape (for the message).
          elements: its element count (exact).
          decoded_bytes: the bytes it decodes to (exact).
        """
        self.elements += elements
        self.decoded_bytes += decoded_bytes
        if (
            self.elements <= self.limits.max_elements
            and self.decoded_bytes <= self.limits.max_decoded_bytes
        ):
            return
        shown = "[" + ",".join(str(d) for d in shape) + "]"
        if self.elements > self.limits.max_elements:
            raise invalid(
                f"Tensor {name} (shape {shown}, {elements} elements) takes the request to "
                f"{self.elements} elements, over the limit of {self.limits.max_elements} "
                "(--max_request_tensor_elements)"
            )
        if self.decoded_bytes > self.limits.max_decoded_bytes:
            raise invalid(
                f"Tensor {name} (shape {shown}, {decoded_bytes} bytes decoded) takes the "
                f"request to {self.decoded_bytes} decoded bytes, over the limit of "
                f"{self.limits.max_decoded_bytes} (--max_decoded_request_bytes)"
            )


def element_count(shape) -> int:
    """The exact element count of a shape (Python integers never overflow)."""
    return math.prod(int(d) for d in shape)


def charge_examples(budget: Budget, count: int, context_bytes: int, example_bytes: int) -> None:
    """Charges `count` serialized tf.Examples, each carrying a copy of the context.

    Args:
      budget: the request's budget.
      count: number of examples.
      context_bytes: serialized size of the context (0 without one).
      example_bytes: total serialized size of the examples.
    """
    decoded = count * (context_bytes + POINTER_BYTES) + example_bytes
    budget.charge("examples", [count], count, decoded)


def charge_arrays(budget: Budget, arrays: dict) -> None:
    """Charges decoded arrays (alias -> ndarray); strings count pointer + payload."""
    charges = []
    for name, array in arrays.items():
        decoded = array.nbytes
        if array.dtype.kind == "O":
            decoded += sum([len(v) for v in array.ravel().tolist() if isinstance(v, bytes)])
        charges.append((name, array.shape, array.size, decoded))
    elements = sum([charge[2] for charge in charges])
    decoded_bytes = sum([charge[3] for charge in charges])
    charge_tensors(budget, elements, decoded_bytes, lambda: charges)


def charge_tensors(budget: Budget, elements: int, decoded_bytes: int, itemize) -> None:
    """Charges tensors by their totals, as `charge_arrays` does.

    For tensors whose sizes are known before their arrays exist
    (serving/deferred_rows.py).

    Args:
      budget: the request's budget.
      elements: their total element count.
      decoded_bytes: their total decoded size.
      itemize: returns [(name, shape, elements, decoded_bytes)] per tensor; called
        only when a cap is passed, to name the tensor that passes it.
    """
    limits = budget.limits
    if (
        budget.elements + elements <= limits.max_elements
        and budget.decoded_bytes + decoded_bytes <= limits.max_decoded_bytes
    ):
        budget.elements += elements
        budget.decoded_bytes += decoded_bytes
        return
    for charge in itemize():  # one by one, to name the tensor that goes over
        budget.charge(*charge)
