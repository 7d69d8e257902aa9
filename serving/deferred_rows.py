"""Row-format predict inputs checked on the event loop, converted once per batch.

A REST `{"instances": [{...}, ...]}` request whose inputs are all scalars of
DT_FLOAT, DT_DOUBLE, DT_INT64 or DT_STRING is the common case (the taxi
model's). Building its arrays request by request costs the event loop a
dozen numpy calls per request. Instead, `defer_rows` only checks on the loop
what json_codec's numpy fast path would accept (key sets, value types, the
int64 range) and returns a `DeferredRows`: an empty dict, for now.
`build_columns` (batch thread) converts all deferred requests of a batch
together (one numpy call per dtype group for the whole batch) and the
signature runs on those columns; a request takes its own rows (views of
the columns) with `fill()` only when something reads them (request log,
shadow).

The arrays are the per-request fast path's: same dtypes and values
(integers reach float inputs through double, then one rounding to float32;
strings are UTF-8 bytes in object arrays) and the same dict order, hence the
same batching key. Anything `defer_rows` is unsure of returns None and takes
the per-request path, which also gives the errors.
"""

import math

import numpy as np
from tensorflow.core.framework import types_pb2

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT_TARGETS = {types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64}
_ITEM_BYTES = {types_pb2.DT_FLOAT: 4, types_pb2.DT_DOUBLE: 8, types_pb2.DT_INT64: 8}
_POINTER_BYTES = 8  # one object-array slot per string


class Layout:
    """How a signature's scalar inputs become columns (per signature, cached by the caller).

    Args:
      groups: [(dtype, [alias, ...])] of DT_FLOAT/DT_DOUBLE/DT_INT64 inputs, one
        numpy conversion per group.
      strings: DT_STRING aliases.

    Attributes:
      order: aliases in the per-request fast path's dict order (strings, then groups).
      key: the batching merge key of such a request (`batching._task_rows`).
      row_bytes: decoded bytes of one row without the string payloads.
    """

    def __init__(self, groups: list, strings: list):
        self.groups = [(dtype, list(names)) for dtype, names in groups]
        self.strings = list(strings)
        self.order = self.strings + [name for _, names in self.groups for name in names]
        self.floats = [n for d, names in self.groups if d in _FLOAT_TARGETS for n in names]
        self.ints = [n for d, names in self.groups if d not in _FLOAT_TARGETS for n in names]
        chars = {name: np.dtype(object).char for name in self.strings}
        for dtype, names in self.groups:
            target = _FLOAT_TARGETS.get(dtype, np.int64)
            chars.update((name, np.dtype(target).char) for name in names)
        self.key = tuple([((), chars[name]) for name in self.order])
        self.item_bytes = {n: _ITEM_BYTES[d] for d, names in self.groups for n in names}
        self.item_bytes.update((name, _POINTER_BYTES) for name in self.strings)
        self.row_bytes = sum(self.item_bytes.values())

    @classmethod
    def of(cls, groups: list, singles: list):
        """A Layout, or None if a single input is not DT_STRING (no deferred path)."""
        if any(dtype != types_pb2.DT_STRING for _, dtype in singles):
            return None
        if any(dtype not in _ITEM_BYTES for dtype, _ in groups):
            return None
        return cls(groups, [name for name, _ in singles])


class DeferredRows(dict):
    """A request's feeds (alias -> ndarray), built per batch by `build_columns`.

    The dict stays empty until `fill()`: `build_columns` converts the checked
    JSON rows into the batch's columns, and `fill()` then puts this request's
    rows (views of those columns) into the dict. Only readers of a request's
    own arrays need that (request log, shadow: serving/rest.py calls it); the
    signature call uses the batch's columns. `rows`, `key`, `elements` and
    `decoded_bytes` (what `limits.charge_arrays` would charge) are known from
    the start.
    """

    __slots__ = (
        "layout",
        "instances",
        "strings",
        "rows",
        "key",
        "elements",
        "decoded_bytes",
        "columns",
        "start",
    )

    def charges(self) -> list:
        """[(alias, shape, elements, decoded_bytes)] per tensor, as `charge_arrays` lists them.

        Only before `build_columns` (it drops the JSON rows).
        """
        rows, item_bytes = self.rows, self.layout.item_bytes
        return [
            (
                name,
                (rows,),
                rows,
                rows * item_bytes[name] + sum(map(len, self.strings.get(name, ()))),
            )
            for name in self.layout.order
        ]

    @property
    def built(self) -> bool:
        """True once `build_columns` has converted this request's rows."""
        return self.columns is not None

    def fill(self) -> "DeferredRows":
        """Puts this request's rows of the built columns into the dict; returns self."""
        if not self and self.columns is not None:
            start, end = self.start, self.start + self.rows
            for name in self.layout.order:
                self[name] = self.columns[name][start:end]
        return self


def defer_rows(instances: list, inputs: dict, layout: Layout, nans: int = 0):
    """A `DeferredRows` for `instances`, or None if the fast path would not accept them.

    Args:
      instances: the request's non-empty `instances` list.
      inputs: signature input alias -> DataType enum.
      layout: `Layout.of(...)` for `inputs` (not None).
      nans: with a document from `json_dialect.parse_nan_as_none`, the body's
        `NaN` count: exactly that many None values must sit at float inputs
        (they become NaN, in place); otherwise None is not a value.

    Returns:
      DeferredRows, or None (take the per-request path).
    """
    keys = inputs.keys()
    found = 0
    for element in instances:
        if type(element) is not dict or element.keys() != keys:
            return None
        for name in layout.floats:
            value = element[name]
            kind = type(value)
            if kind is not float and (kind is not int or not _INT64_MIN <= value <= _INT64_MAX):
                if value is not None or found == nans:
                    return None
                element[name] = math.nan
                found += 1
        for name in layout.ints:
            value = element[name]
            if type(value) is not int or not _INT64_MIN <= value <= _INT64_MAX:
                return None
    if found != nans:
        return None
    strings = {}
    payload = 0
    for name in layout.strings:
        encoded = []
        for element in instances:
            value = element[name]
            if type(value) is not str:
                return None  # b64 objects, lists, numbers: per-request path
            encoded.append(value.encode("utf-8", "surrogateescape"))
        strings[name] = encoded
        payload += sum(map(len, encoded))
    deferred = DeferredRows()
    deferred.columns = deferred.start = None
    deferred.layout = layout
    deferred.instances = instances
    deferred.strings = strings
    deferred.rows = rows = len(instances)
    deferred.key = layout.key
    deferred.elements = rows * len(layout.order)
    deferred.decoded_bytes = rows * layout.row_bytes + payload
    return deferred


def build_columns(parts: list) -> dict:
    """Converts deferred requests of one layout together.

    Args:
      parts: DeferredRows not yet built, with the same `layout`, in batch order.

    Returns:
      alias -> ndarray over all their rows (in `parts` order); each part can
      then `fill()` itself with its own rows.
    """
    layout = parts[0].layout
    if len(parts) == 1:
        instances = parts[0].instances
    else:
        instances = [element for part in parts for element in part.instances]
    columns = {}
    for name in layout.strings:
        column = np.empty(len(instances), dtype=object)
        column[:] = [value for part in parts for value in part.strings[name]]
        columns[name] = column
    for dtype, names in layout.groups:
        table = np.array([[element[name] for element in instances] for name in names])
        target = _FLOAT_TARGETS.get(dtype)
        if target is not None:
            table = table.astype(np.float64, copy=False)  # integers through double
            with np.errstate(over="ignore"):
                table = table.astype(target, copy=False)
        for i, name in enumerate(names):
            columns[name] = table[i]
    columns = {name: columns[name] for name in layout.order}
    start = 0
    for part in parts:
        part.columns, part.start = columns, start
        part.instances = part.strings = None  # the JSON rows are no longer needed
        start += part.rows
    return columns
