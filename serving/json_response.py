"""Response encoding: tensors and classify/regress results to TF Serving JSON.

Reproduces `WriteDecimal` (six significant digits unless that does not
round-trip, then 9 for float / 17 for double; `.0` appended to whole
numbers), `NaN`/`Infinity` tokens, integers as JSON integers, and the
`_bytes` output-alias suffix written as `{"b64": ...}`. Row requests get
`{"predictions": ...}`, columnar ones `{"outputs": ...}`.
"""

import base64
import json
import math

import numpy as np
import orjson

from serving.errors import invalid
from serving.json_dialect import format_double, format_float


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# ---------------------------------------------------------------------------
# Tensors -> JSON
# ---------------------------------------------------------------------------


def _string_token(value: bytes) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return orjson.dumps(text).decode()


def _b64_token(value: bytes) -> str:
    return '{"b64": "' + base64.b64encode(value).decode("ascii") + '"}'


def _tokens(name: str, array: np.ndarray) -> list:
    kind = array.dtype.kind
    flat = array.ravel().tolist()
    if kind == "f":
        if array.dtype == np.float32:
            return [format_float(v) for v in flat]
        if array.dtype == np.float64:
            return [format_double(v) for v in flat]
    elif kind in "iu":
        return [str(v) for v in flat]
    elif kind == "b":
        return ["true" if v else "false" for v in flat]
    elif kind in "OSU":
        if name.endswith("_bytes"):
            return [_b64_token(v if isinstance(v, bytes) else str(v).encode()) for v in flat]
        return [_string_token(v) for v in flat]
    raise invalid(f"Failed to write JSON value for tensor type: {array.dtype}")


def _nest(tokens: list, shape: tuple) -> list:
    """Groups flat tokens into nested JSON lists, keeping the outermost level."""
    level = tokens
    for k in range(len(shape) - 1, 0, -1):
        size = shape[k]
        if size == 1:
            level = ["[" + t + "]" for t in level]
            continue
        groups = math.prod(shape[:k])
        if size == 0:
            level = ["[]"] * groups
        else:
            level = ["[" + ", ".join(level[i : i + size]) + "]" for i in range(0, len(level), size)]
    return level


def _tensor_json(name: str, array: np.ndarray) -> str:
    if array.ndim == 0:
        return _tokens(name, array)[0]
    return "[" + ", ".join(_nest(_tokens(name, array), array.shape)) + "]"


def _rows_json(name: str, array: np.ndarray) -> list:
    return _nest(_tokens(name, array), array.shape)


def _wrap(key: str, inner: str) -> bytes:
    return ('{\n    "' + key + '": ' + inner + "\n}").encode("utf-8")


def encode_predict_response(outputs: dict, row_format: bool) -> bytes:
    """Encodes predict outputs as `{"predictions": ...}` or `{"outputs": ...}`."""
    if not outputs:
        raise invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return _wrap("outputs", _tensor_json(names[0], outputs[names[0]]))
        body = ",\n".join(
            "        " + _quote(n) + ": " + _tensor_json(n, outputs[n]) for n in names
        )
        return _wrap("outputs", "{\n" + body + "\n    }")
    batch = None
    for name in names:
        array = outputs[name]
        if array.ndim == 0:
            raise invalid(f"Tensor name: {name} has no shape information ")
        if batch is None:
            batch = array.shape[0]
        elif array.shape[0] != batch:
            raise invalid(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                f"expecting: {batch}"
            )
    if len(names) == 1:
        rows = _rows_json(names[0], outputs[names[0]])
    else:
        columns = [(_quote(n), _rows_json(n, outputs[n])) for n in names]
        rows = [
            "{" + ", ".join(key + ": " + col[i] for key, col in columns) + "}" for i in range(batch)
        ]
    if not rows:
        return _wrap("predictions", "[]")
    return _wrap("predictions", "[" + ", ".join(rows) + "\n    ]")


def encode_classify_response(results: list) -> bytes:
    """Encodes [[(label, score), ...] per example] as `{"results": ...}`."""
    if not results:
        raise invalid("Cannot convert empty ClassificationResults to JSON")
    per_example = []
    for classes in results:
        pairs = ", ".join(
            "[" + _string_token(label) + ", " + format_float(score) + "]"
            for label, score in classes
        )
        per_example.append("[" + pairs + "]")
    return _wrap("results", "[" + ", ".join(per_example) + "\n    ]")


def encode_regress_response(values: list) -> bytes:
    """Encodes one float per example as `{"results": [...]}`."""
    if not values:
        raise invalid("Cannot convert empty RegressionResults to JSON")
    return _wrap("results", "[" + ", ".join(format_float(v) for v in values) + "\n    ]")


def encode_error(message: str) -> bytes:
    """Encodes `{"error": message}` with JSON escaping."""
    return _wrap("error", _quote(message))
