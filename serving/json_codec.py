"""Request decoding: predict tensors and classify/regress examples from JSON.

Follows `util/json_tensor.cc`: the row (`instances`) and columnar (`inputs`)
formats, per-dtype value rules, shape inference from the first element at
each level, and the exact upstream error messages. A numpy fast path handles
well-formed requests (one numpy call per dtype group for scalar features);
anything it cannot prove valid is re-decoded by the exact path, which
produces the upstream error text. With `defer=True` (REST), row requests of
scalar inputs are only checked here and converted per batch
(serving/deferred_rows.py).

Over 400 lines: the exact decoder (upstream's error text) and the numpy fast path of
each request format (row, columnar, examples) sit together because the fast path must
hand anything it cannot prove valid to the exact one.
"""

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2

from serving.deferred_rows import Layout, defer_rows
from serving.dtypes import dtype_name
from serving.errors import Code, ServingError, invalid
from serving.json_dialect import debug_string, decode_b64, is_b64_object, json_type

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT32 = (0, 2**32 - 1)
_UINT64 = (0, 2**64 - 1)
_INT_RANGES = {
    types_pb2.DT_INT32: _INT32,
    types_pb2.DT_INT16: _INT32,
    types_pb2.DT_INT8: _INT32,
    types_pb2.DT_UINT8: _INT32,
    types_pb2.DT_INT64: _INT64,
    types_pb2.DT_UINT32: _UINT32,
    types_pb2.DT_UINT64: _UINT64,
}
MAX_RANK = 32  # numpy's (and so our tensors') dimension limit
_FLOATS = {types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64}
_INT_NUMPY = {
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64,
}

# ---------------------------------------------------------------------------
# JSON -> tensors (exact path)
# ---------------------------------------------------------------------------


def _type_error(value, dtype: int) -> ServingError:
    return invalid(
        f"JSON Value: {debug_string(value)} Type: {json_type(value)} "
        f"is not of expected type: {dtype_name(dtype)}"
    )


def _scalar(value, dtype: int):
    """Validates one JSON leaf for `dtype` and returns its Python value."""
    if type(value) is dict:
        if dtype == types_pb2.DT_STRING:
            return decode_b64(value)
        raise _type_error(value, dtype)
    if dtype in _FLOATS:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        raise _type_error(value, dtype)
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if type(value) is int and low <= value <= high:
            return value
        raise _type_error(value, dtype)
    if dtype == types_pb2.DT_BOOL:
        if type(value) is bool:
            return value
        raise _type_error(value, dtype)
    if dtype == types_pb2.DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        raise _type_error(value, dtype)
    raise ServingError(
        Code.UNIMPLEMENTED,
        f"Conversion of JSON Value: {debug_string(value)} to type: {dtype_name(dtype)}",
    )


def _dense_shape(value) -> list:
    shape = []
    while type(value) is list and len(shape) <= MAX_RANK:
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value, level: int, shape: list, dtype: int, flat: list) -> None:
    rank = len(shape)
    if type(value) is not list:
        if level != rank:
            raise invalid(
                f"JSON Value: {debug_string(value)} found at incorrect level: "
                f"{level + 1} in the JSON DOM. Expected at level: {rank}"
            )
        flat.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, flat)


def _to_numpy(flat: list, shape: list, dtype: int) -> np.ndarray:
    if dtype in _FLOATS:
        with np.errstate(over="ignore", under="ignore"):
            array = np.array(flat, dtype=np.float64).astype(_FLOATS[dtype])
    elif dtype in _INT_NUMPY:
        wide = np.uint64 if dtype == types_pb2.DT_UINT64 else np.int64
        array = np.array(flat, dtype=wide).astype(_INT_NUMPY[dtype])
    elif dtype == types_pb2.DT_BOOL:
        array = np.array(flat, dtype=np.bool_)
    else:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    return array.reshape(shape)


def _check_rank(rank: int) -> None:
    if rank > MAX_RANK:
        raise invalid(
            f"JSON value nested more than {MAX_RANK} levels deep: "
            f"tensors have at most {MAX_RANK} dimensions"
        )


def _exact_tensor(value, dtype: int, batched: bool = False):
    """Converts one JSON value to (ndarray, shape) with upstream's checks.

    `batched`: the value is one row of a batch, so it may have one dimension less.
    """
    shape = _dense_shape(value)
    _check_rank(len(shape) + batched)
    flat: list = []
    _fill(value, 0, shape, dtype, flat)
    return _to_numpy(flat, shape, dtype), shape


# ---------------------------------------------------------------------------
# JSON -> tensors (numpy fast path)
# ---------------------------------------------------------------------------


def _fast_tensor(value, dtype: int, numbers_only: bool):
    """Returns an ndarray if `value` is certainly valid for `dtype`, else None."""
    if dtype == types_pb2.DT_STRING:
        if type(value) is not list or not all(type(v) is str for v in value):
            return None  # nested lists and b64 objects take the exact path
        array = np.empty(len(value), dtype=object)
        array[:] = [v.encode("utf-8", "surrogateescape") for v in value]
        return array
    is_bool = dtype == types_pb2.DT_BOOL
    if not is_bool and not numbers_only:
        return None  # true/false could hide inside a numeric list
    try:
        array = np.array(value)
    except (ValueError, OverflowError):
        return None
    kind = array.dtype.kind
    if is_bool:
        return array if kind == "b" else None
    if dtype in _FLOATS:
        if kind not in "iuf" or (kind != "f" and array.size == 0):
            return None
        # Integers go through double like rapidjson's GetFloat (int64 -> float32 directly
        # can round the other way); huge values become +-inf silently, as on the exact path.
        with np.errstate(over="ignore"):
            return array.astype(np.float64, copy=False).astype(_FLOATS[dtype])
    if dtype in _INT_RANGES and kind in "iu":
        if dtype == types_pb2.DT_INT64 and kind == "i":
            return array  # numpy only picks int64 for values that fit
        if array.size:
            low, high = _INT_RANGES[dtype]
            if int(array.min()) < low or int(array.max()) > high:
                return None
        return array.astype(_INT_NUMPY[dtype])
    return None


# ---------------------------------------------------------------------------
# Predict requests
# ---------------------------------------------------------------------------


def read_signature_name(doc: dict) -> str:
    """Returns `signature_name` ("" if absent) after TF Serving's type check."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(
            f"JSON Value: {debug_string(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def _is_element_object(value) -> bool:
    return type(value) is dict and not is_b64_object(value)


def _rows_exact(instances: list, inputs: dict) -> dict:
    names = sorted(inputs)
    if type(instances[0]) is not dict and len(inputs) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple "
            "input tensors required as per tensorinfo_map"
        )
    objects = _is_element_object(instances[0])
    values = {name: [] for name in names}
    shapes: dict = {}
    sizes: dict = {}

    def add(item, name):
        if name not in inputs:
            raise invalid(f"JSON object: does not have named input: {name}")
        array, shape = _exact_tensor(item, inputs[name], batched=True)
        if name not in sizes:
            sizes[name], shapes[name] = array.size, shape
        elif sizes[name] != array.size:
            raise invalid(f"Expecting tensor size: {sizes[name]} but got: {array.size}")
        elif shapes[name] != shape:
            raise invalid(
                f"Expecting shape [{','.join(map(str, shapes[name]))}] "
                f"but got: [{','.join(map(str, shape))}]"
            )
        values[name].append(array)

    for i, element in enumerate(instances):
        if objects:
            if not _is_element_object(element):
                raise invalid(f"Expecting object but got list at item {i} of input list")
            for key, item in element.items():
                try:
                    add(item, key)
                except ServingError as e:
                    raise invalid(
                        f"Failed to process element: {i} key: {key} of 'instances' "
                        f"list. Error: {e.to_status_string()}"
                    ) from None
            if set(element) != set(names):
                raise invalid(
                    f"Failed to process element: {i} of 'instances' list. JSON object: "
                    f"{debug_string(element)} keys must be equal to: {','.join(names)}"
                )
        else:
            if _is_element_object(element):
                raise invalid(f"Expecting value/list but got object at item {i} of input list")
            try:
                add(element, names[0])
            except ServingError as e:
                raise invalid(
                    f"Failed to process element: {i} of 'instances' list. "
                    f"Error: {e.to_status_string()}"
                ) from None
    return {name: np.stack(arrays) for name, arrays in values.items() if arrays}


def _rows_fast(instances: list, inputs: dict, numbers_only: bool):
    if len(inputs) == 1:
        ((name, dtype),) = inputs.items()
        if type(instances[0]) is dict:
            if not all(type(e) is dict and e.keys() == {name} for e in instances):
                return None
            array = _fast_tensor([e[name] for e in instances], dtype, numbers_only)
        else:
            if any(type(e) is dict for e in instances):
                return None
            array = _fast_tensor(instances, dtype, numbers_only)
        return None if array is None else {name: array}
    keys = inputs.keys()
    for element in instances:
        if type(element) is not dict or element.keys() != keys:
            return None
    out = {}
    groups, singles = _plan(inputs) if numbers_only else ((), inputs.items())
    for name, dtype in singles:
        array = _fast_tensor([e[name] for e in instances], dtype, numbers_only)
        if array is None:
            return None
        out[name] = array
    for dtype, names in groups:
        if not _group_to_arrays(instances, names, dtype, out):
            return None
    return out


# Scalar features of these dtypes are converted with one numpy call per dtype.
_GROUPABLE = {
    types_pb2.DT_FLOAT: ("iuf", np.float32),
    types_pb2.DT_DOUBLE: ("iuf", np.float64),
    types_pb2.DT_INT64: ("i", np.int64),
}
_PLANS: dict = {}  # id(inputs) -> (inputs, plan, layout); inputs are per-signature constants


def _plan(inputs: dict):
    """Returns ([(dtype, names)] groups, [(name, dtype)] singles), cached per signature."""
    return _planned(inputs)[1]


def _layout(inputs: dict):
    """The deferred-rows Layout of a signature's inputs, or None (cached)."""
    return _planned(inputs)[2]


def _planned(inputs: dict) -> tuple:
    entry = _PLANS.get(id(inputs))
    if entry is not None and entry[0] is inputs:
        return entry
    grouped: dict = {}
    singles = []
    for name, dtype in inputs.items():
        if dtype in _GROUPABLE:
            grouped.setdefault(dtype, []).append(name)
        else:
            singles.append((name, dtype))
    plan = (list(grouped.items()), singles)
    if len(_PLANS) > 256:
        _PLANS.clear()
    entry = _PLANS[id(inputs)] = (inputs, plan, Layout.of(*plan))
    return entry


def _group_to_arrays(instances: list, names: list, dtype: int, out: dict) -> bool:
    """Converts same-dtype scalar features of all rows at once (a [k, N] array)."""
    try:
        table = np.array([[e[n] for e in instances] for n in names])
    except (ValueError, OverflowError):
        return False
    kinds, target = _GROUPABLE[dtype]
    if table.ndim != 2 or table.dtype.kind not in kinds or table.shape[1] == 0:
        return False
    if target is not np.int64:
        table = table.astype(np.float64, copy=False)  # integers through double, as above
    with np.errstate(over="ignore"):
        table = table.astype(target, copy=False)
    for i, name in enumerate(names):
        out[name] = table[i]
    return True


def _columns(value, inputs: dict, numbers_only: bool) -> dict:
    if type(value) is not dict or is_b64_object(value):
        if len(inputs) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple "
                "input tensors required as per tensorinfo_map"
            )
        items = [(next(iter(inputs)), value)]
    else:
        items = []
        for name in sorted(inputs):
            if name not in value:
                raise invalid(f"Missing named input: {name} in 'inputs' object.")
            items.append((name, value[name]))
    out = {}
    for name, item in items:
        array = _fast_tensor(item, inputs[name], numbers_only)
        out[name] = array if array is not None else _exact_tensor(item, inputs[name])[0]
    return out


def decode_predict_inputs(doc: dict, inputs: dict, body: bytes = b"", defer: bool = False):
    """Builds the feed tensors of a predict request.

    Args:
      doc: the parsed request object.
      inputs: signature input alias -> DataType enum.
      body: the raw body; lets the fast path rule out hidden booleans.
      defer: row requests of scalar inputs may come back as a `DeferredRows`:
        checked here, their arrays built per batch by the batching scheduler
        (serving/deferred_rows.py).

    Returns:
      (alias -> ndarray, is_row_format).

    Raises:
      ServingError: with TF Serving's message for the first problem found.
    """
    numbers_only = b"true" not in body and b"false" not in body
    has_instances = "instances" in doc
    has_inputs = "inputs" in doc
    if has_instances and has_inputs:
        raise invalid(
            f"JSON Value: {debug_string(doc)} Not formatted correctly expecting only "
            "one of 'inputs' or 'instances' keys to exist "
        )
    if has_instances:
        instances = doc["instances"]
        if type(instances) is not list:
            raise invalid(
                f"JSON Value: {debug_string(doc)} Expecting 'instances' to be an list/array"
            )
        if not instances:
            raise invalid(f"JSON Value: {debug_string(doc)} No values in 'instances' array")
        if defer and numbers_only and len(inputs) > 1:
            layout = _layout(inputs)
            if layout is not None:
                deferred = defer_rows(instances, inputs, layout)
                if deferred is not None:
                    return deferred, True
        tensors = _rows_fast(instances, inputs, numbers_only)
        if tensors is None:
            tensors = _rows_exact(instances, inputs)
        return tensors, True
    if has_inputs:
        return _columns(doc["inputs"], inputs, numbers_only), False
    raise invalid("Missing 'inputs' or 'instances' key")


def defer_nan_rows(doc: dict, inputs: dict, body: bytes):
    """DeferredRows from a `json_dialect.parse_nan_as_none` document, or None.

    Accepts only what `decode_predict_inputs(..., defer=True)` would defer on
    the exact parse: row requests of scalar inputs, every `NaN` token of the
    body at a float input and no key repeated in any object.

    Returns:
      DeferredRows, or None: then parse the body with `parse_json_object` and
      decode that (the candidate document may have been changed).
    """
    instances = doc.get("instances")
    if "inputs" in doc or type(instances) is not list or not instances or len(inputs) < 2:
        return None
    if b"true" in body or b"false" in body:
        return None
    layout = _layout(inputs)
    if layout is None:
        return None
    strings = len(doc)  # keys, and string values: each is one pair of quotes in the body
    for key, value in doc.items():
        if key != "instances":
            if type(value) is list or type(value) is dict:
                return None
            strings += type(value) is str
    deferred = defer_rows(instances, inputs, layout, nans=body.count(b"NaN"))
    if deferred is None:
        return None
    # A member orjson dropped (a repeated key) left its quoted key in the body.
    strings += deferred.rows * (len(inputs) + len(layout.strings))
    if body.count(b'"') != 2 * strings:
        return None
    return deferred


# ---------------------------------------------------------------------------
# Classify / regress requests
# ---------------------------------------------------------------------------

_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


def _add_feature_value(value, name: str, feature, kind: list) -> None:
    def check(wanted):
        if kind[0] is None:
            kind[0] = wanted
        elif kind[0] != wanted:
            raise invalid(
                f"Unexpected element type in feature: {name} expecting type: {_KIND_NAMES[kind[0]]}"
            )

    if value is None or type(value) is list or (type(value) is dict and not is_b64_object(value)):
        raise invalid(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")
    if type(value) is bool:
        check("int64_list")
        feature.int64_list.value.append(1 if value else 0)
    elif type(value) is dict:
        check("bytes_list")
        feature.bytes_list.value.append(decode_b64(value))
    elif isinstance(value, str):
        check("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8", "surrogateescape"))
    elif isinstance(value, float):
        check("float_list")
        feature.float_list.value.append(value)
    else:
        check("int64_list")
        if value > _INT64[1]:
            raise invalid(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(value)


def json_to_example(value) -> example_pb2.Example:
    """Builds a tf.Example from `{feature: value | [values]}`."""
    if type(value) is not dict:
        raise invalid(f"Example must be JSON object but got JSON {json_type(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = feature_pb2.Feature()
        kind = [None]
        for item in content if type(content) is list else [content]:
            _add_feature_value(item, name, feature, kind)
        example.features.feature[name].CopyFrom(feature)
    return example


def decode_examples(doc: dict):
    """Decodes a classify/regress body into (examples, context or None)."""
    context = None
    if "context" in doc:
        context = json_to_example(doc["context"])
    if "examples" not in doc:
        raise invalid(
            f"JSON Value: {debug_string(doc)} When method is classify, key 'examples' "
            "is expected and was not found"
        )
    examples = doc["examples"]
    if type(examples) is not list:
        raise invalid(
            f"JSON Value: {debug_string(doc)} Expecting 'examples' value to be an list/array"
        )
    if not examples:
        raise invalid(f"JSON Value: {debug_string(doc)} 'examples' value is an empty array")
    return [json_to_example(e) for e in examples], context
