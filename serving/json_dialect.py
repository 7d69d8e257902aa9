"""TF Serving's JSON dialect (rapidjson with NaN/Inf, stop-when-done).

`parse_json_object` accepts what TF Serving accepts: `NaN`, `Inf`/`Infinity`
tokens, trailing data after the first value, and integers beyond 64 bits (as
doubles); for repeated top-level keys the first one wins. Errors carry
rapidjson's English messages. `debug_string` re-serializes a value for error
messages (single-line arrays, 256-character cap). b64 objects are
`{"b64": "<standard base64>"}`. `format_float`/`format_double` write numbers
like TF Serving's `WriteDecimal`.
"""

import base64
import binascii
import json
import math
import re
import struct

import orjson

from serving.errors import invalid

_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
_DEBUG_CAP = 256
_F32 = struct.Struct("f")

_PY_TO_RAPIDJSON = (
    ("Expecting value", "Invalid value."),
    ("Expecting property name", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid \\uXXXX escape", "Incorrect hex digit after \\u escape in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Invalid control character", "Invalid encoding in string."),
)
_INF_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?)Inf(?:inity)?\b', re.S)


def _first_key_wins(pairs):
    obj = {}
    for key, value in pairs:
        obj.setdefault(key, value)
    return obj


def _parse_int(text: str):
    value = int(text)
    if _INT64[0] <= value <= _UINT64[1]:
        return value
    return float(value)  # rapidjson stores out-of-range integers as double


_DECODER = json.JSONDecoder(
    object_pairs_hook=_first_key_wins,
    parse_int=_parse_int,
    parse_constant=float,
)


def _normalize_inf(text: str) -> str:
    def repl(match):
        if match.group(0).startswith('"'):
            return match.group(0)
        return match.group(1) + "Infinity"

    return _INF_TOKEN.sub(repl, text)


def _rapidjson_message(error: json.JSONDecodeError, text: str) -> str:
    for prefix, message in _PY_TO_RAPIDJSON:
        if error.msg.startswith(prefix):
            return message
    if error.msg.startswith("Expecting ',' delimiter"):
        # Decide between the object and the array flavour from the context.
        depth = []
        in_string = False
        escaped = False
        for ch in text[: error.pos]:
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "[{":
                depth.append(ch)
            elif ch in "]}" and depth:
                depth.pop()
        if depth and depth[-1] == "[":
            return "Missing a comma or ']' after an array element."
        return "Missing a comma or '}' after an object member."
    return "Invalid value."


def _slow_parse(body: bytes):
    text = body.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise invalid(f"JSON Parse error: The document is empty. at offset: {start}")
    text = _normalize_inf(text)
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as e:
        raise invalid(
            f"JSON Parse error: {_rapidjson_message(e, text)} at offset: {e.pos}"
        ) from None
    except RecursionError:
        raise invalid(
            "JSON Parse error: Terminate parsing due to Handler error. at offset: 0"
        ) from None
    return value


def _may_repeat_keys(body: bytes, doc: dict) -> bool:
    for key in doc:
        token = orjson.dumps(key)
        if body.count(token) > 1:
            return True
    return False


def parse_json_object(body: bytes) -> dict:
    """Parses a request body the way TF Serving's rapidjson setup does.

    Args:
      body: the raw HTTP body.

    Returns:
      The top-level JSON object as a dict.

    Raises:
      ServingError: INVALID_ARGUMENT with TF Serving's parse-error message.
    """
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = _slow_parse(body)
    else:
        if isinstance(doc, dict) and _may_repeat_keys(body, doc):
            doc = _slow_parse(body)  # rapidjson keeps the first duplicate
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {debug_string(doc)} Is not object")
    return doc


# ---------------------------------------------------------------------------
# Debug rendering of JSON values (for error messages)
# ---------------------------------------------------------------------------


class _Budget(Exception):
    pass


def json_type(value) -> str:
    """rapidjson's type name of a parsed JSON value (`Number`, `Object`, ...)."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _render(value, indent: int, out: list, size: list) -> None:
    if size[0] > _DEBUG_CAP:
        raise _Budget
    if value is None or value is True or value is False:
        piece = "null" if value is None else ("true" if value else "false")
    elif isinstance(value, int):
        piece = str(value)
    elif isinstance(value, float):
        piece = format_double(value)
    elif isinstance(value, str):
        piece = _quote(value)
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(", ")
            _render(item, indent, out, size)
        piece = "]"
    else:
        if not value:
            piece = "{}"
        else:
            pad = "    " * (indent + 1)
            out.append("{\n")
            for i, (key, item) in enumerate(value.items()):
                out.append((",\n" if i else "") + pad + _quote(key) + ": ")
                size[0] += len(pad) + len(key)
                _render(item, indent + 1, out, size)
            piece = "\n" + "    " * indent + "}"
    out.append(piece)
    size[0] += len(piece)


def debug_string(value) -> str:
    """Re-serializes a JSON value for an error message (capped at 256 chars)."""
    out: list = []
    try:
        _render(value, 0, out, [0])
    except _Budget:
        pass
    return "".join(out)[:_DEBUG_CAP]


def is_b64_object(value) -> bool:
    """True for `{"b64": "<string>"}` (exactly one member)."""
    return type(value) is dict and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_b64(value) -> bytes:
    """Decodes a `{"b64": ...}` object with the standard base64 alphabet."""
    if not is_b64_object(value):
        raise invalid(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
    text = value["b64"].strip()
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise invalid("Unable to base64 decode") from None


def _special(value: float):
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def format_float(value: float) -> str:
    """Formats a float32 value like TF Serving's `WriteDecimal<float>`."""
    if not math.isfinite(value):
        return _special(value)
    text = format(value, ".6g")
    try:
        same = _F32.unpack(_F32.pack(float(text)))[0] == value
    except OverflowError:
        same = False
    if not same:
        text = format(value, ".9g")
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def format_double(value: float) -> str:
    """Formats a float64 value like TF Serving's `WriteDecimal<double>`."""
    if not math.isfinite(value):
        return _special(value)
    text = format(value, ".6g")
    if float(text) != value:
        text = format(value, ".17g")
    if "." not in text and "e" not in text:
        text += ".0"
    return text
