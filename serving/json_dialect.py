"""TF Serving's JSON dialect (rapidjson with NaN/Inf, stop-when-done).

`parse_json_object` accepts what TF Serving accepts: `NaN`, `Inf`/`Infinity`
tokens, trailing data after the first value, and integers beyond 64 bits (as
doubles); for repeated top-level keys the first one wins. Errors carry
rapidjson's English messages. `parse_nan_as_none` is a cheaper first try
for bodies with `NaN`, whose result the caller must verify. `debug_string`
re-serializes a value for error messages (single-line arrays, 256-character
cap). b64 objects are `{"b64": "<standard base64>"}`.
`format_float`/`format_double` write numbers like TF Serving's
`WriteDecimal`.

Over 400 lines: a JSON reader and writer that reproduce rapidjson's accepted syntax and
error messages (``_Deep`` parses what Python's ``json`` rejects) and TF Serving's number
formatting; reader, error text and writer share the token rules.
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


class _NumberTooBig(ValueError):
    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


def _first_key_wins(pairs):
    obj = dict(pairs)
    if len(obj) == len(pairs):  # no repeated key: the common case, built in C
        return obj
    obj = {}
    for key, value in pairs:
        obj.setdefault(key, value)
    return obj


def _parse_int(text: str):
    if len(text) <= 20:
        value = int(text)
        if _INT64[0] <= value <= _UINT64[1]:
            return value
    return _parse_float(text)  # rapidjson stores out-of-range integers as double


def _parse_float(text: str) -> float:
    value = float(text)  # no digit limit, unlike int()
    if math.isinf(value):
        raise _NumberTooBig(text)
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_first_key_wins,
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=float,
)
# Documents whose numbers all fit (no digit run of 19+, no 3-digit exponent: every
# integer is within int64 and no float overflows) parse their numbers in C.
_PLAIN_NUMBERS_DECODER = json.JSONDecoder(object_pairs_hook=_first_key_wins, parse_constant=float)
_DIGITS_TO_9 = bytes.maketrans(b"0123456789E", b"9999999999e")
_BIG_NUMBER_SHAPES = (b"9" * 19, b"e999", b"e+999", b"e-999")


def _may_have_big_numbers(body: bytes) -> bool:
    """True unless every digit run is shorter than 19 and every exponent under 100."""
    shapes = body.translate(_DIGITS_TO_9)
    return any(shape in shapes for shape in _BIG_NUMBER_SHAPES)


_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?")
_LITERALS = (
    ("true", True),
    ("false", False),
    ("null", None),
    ("NaN", math.nan),
    ("Infinity", math.inf),
    ("-Infinity", -math.inf),
)
_KEEP_DEPTH = 300
_SPACE = " \t\n\r"
_SPACE_AFTER_OPEN = tuple("[" + c for c in _SPACE)
_SPACE_AFTER_CLOSE = tuple("]" + c for c in _SPACE)
_OPEN_RUN = re.compile(r"[\[ \t\n\r]+")
_CLOSE_RUN = re.compile(r"[\] \t\n\r]+")
_ESCAPE = re.compile(r"\\(?:u([dD][89a-fA-F][0-9a-fA-F]{2})|.)", re.S)


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


def _parse_error(message: str, offset: int):
    return invalid(f"JSON Parse error: {message} at offset: {offset}")


class _Deep:
    """An iterative parser for documents nested deeper than orjson/json allow.

    Same dialect and messages as the recursive path. Runs of brackets are
    opened and closed in one step, so TF Serving's 500,000-level test
    documents cost milliseconds per 100k levels. Values below `_KEEP_DEPTH`
    levels are checked but not built (their container stays empty): nothing
    reads that deep (tensors have at most 32 dimensions, error messages show
    at most 256 characters).
    """

    def __init__(self, text: str):
        self.text = text
        self.stack: list = []  # open containers, innermost last (None: not built)
        self.keys: list = []  # per open container: member name, None for arrays
        self.objects: list = []  # stack indices of open objects
        self.root = None

    def _attach(self, value) -> None:
        if not self.stack:
            self.root = value
        elif self.keys[-1] is None:
            if self.stack[-1] is not None:
                self.stack[-1].append(value)
        elif self.stack[-1] is not None:
            self.stack[-1].setdefault(self.keys[-1], value)  # rapidjson: first key wins

    def _open_arrays(self, count: int) -> None:
        depth = len(self.stack)
        built = [[] for _ in range(max(0, min(count, _KEEP_DEPTH - depth)))]
        for outer, inner in zip(built, built[1:], strict=False):
            outer.append(inner)
        if built:
            self._attach(built[0])
        self.stack.extend(built)
        self.stack.extend([None] * (count - len(built)))
        self.keys.extend([None] * count)

    def _open_object(self) -> None:
        container = {} if len(self.stack) < _KEEP_DEPTH else None
        if container is not None:  # too deep: checked, not built
            self._attach(container)
        self.objects.append(len(self.stack))
        self.stack.append(container)
        self.keys.append("")

    def _close(self, count: int = 1) -> None:
        depth = len(self.stack) - count
        del self.stack[depth:]
        del self.keys[depth:]
        if self.objects and self.objects[-1] >= depth:
            self.objects.pop()

    def _string(self, pos: int):
        try:
            return json.decoder.scanstring(self.text, pos + 1, True)
        except json.JSONDecodeError as e:
            raise _parse_error(_rapidjson_message(e, self.text), e.pos) from None

    def _member_name(self, pos: int) -> int:
        text = self.text
        pos = _WS.match(text, pos).end()
        if not text.startswith('"', pos):
            raise _parse_error("Missing a name for object member.", pos)
        name, pos = self._string(pos)
        pos = _WS.match(text, pos).end()
        if not text.startswith(":", pos):
            raise _parse_error("Missing a colon after a name of object member.", pos)
        self.keys[-1] = name
        return pos + 1

    def _scalar(self, pos: int):
        text = self.text
        if text.startswith('"', pos):
            return self._string(pos)
        match = _NUMBER.match(text, pos)
        if match:
            token = match.group(0)
            if match.group(2) or match.group(3):
                return _parse_float(token), match.end()
            return _parse_int(token), match.end()
        for token, value in _LITERALS:
            if text.startswith(token, pos):
                return value, pos + len(token)
        raise _parse_error("Invalid value.", pos)

    def parse(self, pos: int):
        """Parses the value at `pos` (stops when done, like rapidjson)."""
        text, stack, keys, objects = self.text, self.stack, self.keys, self.objects
        size = len(text)
        skip = _WS.match
        want_value = True
        while True:
            if pos < size and text[pos] in _SPACE:
                pos = skip(text, pos).end()
            char = text[pos] if pos < size else ""
            if want_value:
                if char == "[":
                    if text.startswith("[", pos + 1) or text.startswith(_SPACE_AFTER_OPEN, pos):
                        run = _OPEN_RUN.match(text, pos)
                        self._open_arrays(run.group(0).count("["))
                        pos = run.end()
                    else:  # one array: the common case, inlined
                        container = [] if len(stack) < _KEEP_DEPTH else None
                        if container is not None:  # too deep: checked, not built
                            self._attach(container)
                        stack.append(container)
                        keys.append(None)
                        pos += 1
                    if text.startswith("]", pos):
                        self._close()
                        pos += 1
                        want_value = False
                elif char == "{":
                    self._open_object()
                    pos = skip(text, pos + 1).end()
                    if text.startswith("}", pos):
                        self._close()
                        pos += 1
                        want_value = False
                    else:
                        pos = self._member_name(pos)
                else:
                    value, pos = self._scalar(pos)
                    self._attach(value)
                    want_value = False
                continue
            if not keys:
                return self.root
            if char == ",":
                if keys[-1] is None:
                    pos += 1
                else:
                    pos = self._member_name(pos + 1)
                want_value = True
            elif keys[-1] is None:
                if char != "]":
                    raise _parse_error("Missing a comma or ']' after an array element.", pos)
                if text.startswith("]", pos + 1) or text.startswith(_SPACE_AFTER_CLOSE, pos):
                    run = _CLOSE_RUN.match(text, pos).group(0)
                    arrays = len(keys) - (objects[-1] + 1 if objects else 0)
                    count = min(run.count("]"), arrays)
                    self._close(count)
                    pos += _past_nth_close(run, count)
                else:
                    stack.pop()
                    keys.pop()
                    pos += 1
            elif char == "}":
                stack.pop()
                keys.pop()
                objects.pop()
                pos += 1
            else:
                raise _parse_error("Missing a comma or '}' after an object member.", pos)


def _past_nth_close(run: str, count: int) -> int:
    """Length of the prefix of a `]` run that holds its first `count` brackets."""
    if len(run) == run.count("]"):
        return count
    seen = 0
    for i, char in enumerate(run):
        seen += char == "]"
        if seen == count:
            return i + 1
    return len(run)


def _check_surrogates(text: str) -> None:
    """rapidjson rejects `\\uD800`-style escapes that do not form a pair."""
    high_end = -1
    for match in _ESCAPE.finditer(text):
        unit = match.group(1)
        if high_end >= 0:
            if match.start() != high_end or unit is None or unit[1] not in "cdefCDEF":
                raise _parse_error("The surrogate pair in string is invalid.", high_end)
            high_end = -1
        elif unit is not None:
            if unit[1] in "cdefCDEF":
                raise _parse_error("The surrogate pair in string is invalid.", match.start())
            high_end = match.end()
    if high_end >= 0:
        raise _parse_error("The surrogate pair in string is invalid.", high_end)


def _slow_parse(body: bytes):
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _parse_error("Invalid encoding in string.", e.start) from None
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise _parse_error("The document is empty.", start)
    if "Inf" in text:
        text = _normalize_inf(text)
    if "\\u" in text:
        _check_surrogates(text)
    decoder = _DECODER if _may_have_big_numbers(body) else _PLAIN_NUMBERS_DECODER
    try:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError as e:
            raise _parse_error(_rapidjson_message(e, text), e.pos) from None
        except RecursionError:
            value = _Deep(text).parse(start)
    except _NumberTooBig as e:
        offset = max(text.find(e.text), 0)
        raise _parse_error("Number too big to be stored in double.", offset) from None
    return value


def _may_repeat_keys(body: bytes, doc: dict) -> bool:
    for key in doc:
        token = orjson.dumps(key)
        if body.count(token) > 1:
            return True
    return False


def parse_json_object(body: bytes) -> dict:
    """Parses a request body the way TF Serving's rapidjson setup does.

    Beyond what rapidjson checks by default, invalid UTF-8 is rejected
    ("Invalid encoding in string."), so every string is valid Unicode.
    Nesting depth is unlimited (rapidjson's iterative mode): documents
    deeper than the recursive parsers allow take an iterative path.

    Args:
      body: the raw HTTP body.

    Returns:
      The top-level JSON object as a dict.

    Raises:
      ServingError: INVALID_ARGUMENT with TF Serving's parse-error message.
    """
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    if b"NaN" in body:  # orjson refuses NaN: skip a failed attempt
        doc = _slow_parse(body)
    else:
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


def parse_nan_as_none(body: bytes):
    """orjson's parse of a body whose `NaN` tokens are read as None, or None.

    `parse_json_object` parses any body holding `NaN` with Python's json module
    (orjson refuses NaN), several times slower. This is a cheap first try for
    bodies without `null`, `Inf`, backslashes or repeated top-level keys: every
    `NaN` is replaced by `null` before orjson parses it. A `NaN` inside a string
    or a key is changed too, so the result is only a candidate: the caller must
    find exactly `body.count(b"NaN")` None values, each where a NaN is a valid
    value, and check for repeated keys in the objects it reads (orjson keeps the
    last, the exact parser the first); otherwise it must use `parse_json_object`.

    Returns:
      The candidate top-level object, or None (use `parse_json_object`).
    """
    if b"NaN" not in body or b"null" in body or b"Inf" in body or b"\\" in body:
        return None
    try:
        doc = orjson.loads(body.replace(b"NaN", b"null"))
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or _may_repeat_keys(body, doc):
        return None
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
        size[0] += 1  # counting openers bounds the recursion by the cap
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
            size[0] += 2
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
