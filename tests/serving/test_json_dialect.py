"""The request JSON dialect: iterative parsing of deep documents, strictness."""

import json
import math
import random

import numpy as np
import pytest

from serving import json_dialect
from serving.errors import ServingError
from serving.json_dialect import debug_string, parse_json_object

LEAVES = [0, -7, 2.5, 1e300, "x", 'é\n\\"', None, True, False, [], {}]


def _random_value(rng: random.Random, depth: int, leaves=LEAVES, least: int = 1):
    if depth == 0:
        return rng.choice(leaves)
    if rng.random() < 0.5:
        return [_random_value(rng, depth - 1, leaves, least) for _ in range(rng.randint(least, 3))]
    return {
        rng.choice("abc"): _random_value(rng, depth - 1, leaves, least)
        for _ in range(rng.randint(least, 3))
    }


def test_iterative_parser_agrees_with_json_module():
    rng = random.Random(7)
    for _ in range(300):
        value = {"k": _random_value(rng, rng.randint(0, 7))}
        for separators in ((",", ":"), (" , ", " :\t")):
            text = json.dumps(value, separators=separators, indent=rng.choice([None, 1]))
            assert json_dialect._Deep(text).parse(0) == json.loads(text), text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[ [ [1] , [ ] ] ]", [[[1], []]]),
        ('{"a": [[ ]], "a": 2, "b": [ {"c": [[3]]} ]}', {"a": [[]], "b": [{"c": [[3]]}]}),
        ("[NaN, Infinity, -Infinity, 1e2, -0]", None),
        ("[[1]]] trailing", [[1]]),  # stop when done
    ],
)
def test_iterative_parser_cases(text, expected):
    value = json_dialect._Deep(text).parse(0)
    if expected is None:
        assert value[0] != value[0] and value[1:] == [float("inf"), -float("inf"), 100.0, 0]
    else:
        assert value == expected


def test_500000_levels_parse_and_stay_shallow_in_memory():
    body = b'{"instances": [1.0], "nested": ' + b"[" * 500_000 + b"]" * 500_000 + b"}"
    doc = parse_json_object(body)
    assert doc["instances"] == [1.0]
    depth, value = 0, doc["nested"]
    while value:
        depth, value = depth + 1, value[0]
    assert depth == json_dialect._KEEP_DEPTH - 2  # deeper levels are checked, not built
    assert debug_string(doc).startswith('{\n    "instances": [1.0],\n    "nested": [[[')


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"a": ' + b"[" * 5000 + b"]" * 4999 + b"}", "Missing a comma or ']' after an array"),
        (b'{"a": ' + b"[{" * 3000, "Missing a name for object member. at offset: 8"),
        (b'{"a": ' + b'[{"b" ' * 2000, "Missing a colon after a name of object member."),
        (b'{"a": ' + b"[" * 2000 + b"tru", "Invalid value. at offset: 2006"),
        (b'{"a": ' + b"[" * 2000 + b'"x', "Missing a closing quotation mark in string."),
        (b'{"a": ' + b"[" * 2000 + b"1e999", "Number too big to be stored in double."),
        (b'{"a": "\\ud800x"}', "The surrogate pair in string is invalid."),
        (b'{"a": "\\udc00"}', "The surrogate pair in string is invalid."),
        (b'{"a": "ok\xe9"}', "Invalid encoding in string. at offset: 9"),
    ],
)
def test_parse_errors(body, message):
    with pytest.raises(ServingError) as error:
        parse_json_object(body)
    assert message in error.value.message


def test_escaped_backslash_is_not_a_surrogate_escape():
    assert parse_json_object(b'{"a": "\\\\ud800", "b": "\\ud83d\\ude00"}') == {
        "a": "\\ud800",
        "b": "\U0001f600",
    }


def test_debug_string_of_deep_values_is_capped_without_recursing_deeply():
    value = []
    for _ in range(5000):  # built bottom-up: no recursion to make it
        value = [value]
    assert len(debug_string({"k": value})) == 256


# Bodies with NaN (every row with a missing value) are parsed by the json module
# instead of orjson; its numbers are parsed in C unless one may not fit.


def test_nan_body_numbers_beyond_int64_are_doubles_as_in_rapidjson():
    doc = parse_json_object(
        b'{"x": NaN, "i": -9999999999999999999, "u": 18446744073709551615, '
        b'"big": 123456789012345678901234, "small": -9223372036854775808, "f": 1e99}'
    )
    assert doc["x"] != doc["x"]
    assert type(doc["i"]) is float and doc["i"] == -1e19
    assert type(doc["u"]) is int and doc["u"] == 2**64 - 1
    assert type(doc["big"]) is float and doc["big"] == 1.2345678901234568e23
    assert type(doc["small"]) is int and doc["small"] == -(2**63)
    assert doc["f"] == 1e99


@pytest.mark.parametrize("number", [b"1e999", b"1E+400", b"-2.5e-999", b"1" * 400])
def test_nan_body_number_too_big(number):
    if number == b"-2.5e-999":  # underflow is fine: 0.0
        assert parse_json_object(b'{"x": NaN, "f": ' + number + b"}")["f"] == 0.0
        return
    with pytest.raises(ServingError, match="Number too big to be stored in double"):
        parse_json_object(b'{"x": NaN, "f": ' + number + b"}")


def test_nan_body_first_repeated_key_wins_at_every_level():
    doc = parse_json_object(b'{"x": NaN, "a": 1, "a": 2, "o": {"k": [1], "k": 2, "j": 3}}')
    assert doc["a"] == 1 and doc["o"] == {"k": [1], "j": 3}
    assert list(doc) == ["x", "a", "o"] and list(doc["o"]) == ["k", "j"]


def _spaced(rng: random.Random, text: str) -> str:
    """`text` with random JSON whitespace after some structural characters."""
    out, in_string, escaped = [], False, False
    for char in text:
        out.append(char)
        if in_string:
            escaped, in_string = not escaped and char == "\\", escaped or char != '"'
        elif char == '"':
            in_string = True
        elif char in "[]{},:" and rng.random() < 0.3:
            out.append(rng.choice([" ", "\n", "\t", "\r", "  "]))
    return "".join(out)


def _outcome(parse, text: str):
    start = len(text) - len(text.lstrip(" \t\r\n"))
    try:
        return "value", repr(parse(text, start))  # repr: NaN equals NaN
    except ServingError as e:
        return "error", e.message
    except json_dialect._NumberTooBig as e:
        return "too big", e.text


def _recursive(text: str, start: int):
    try:
        return json_dialect._DECODER.raw_decode(text, start)[0]
    except json.JSONDecodeError as e:
        raise json_dialect._parse_error(json_dialect._rapidjson_message(e, text), e.pos) from None


def test_iterative_parser_agrees_with_the_recursive_one_on_broken_documents():
    # Same value, or same message at the same offset, on valid documents and on documents
    # cut short, missing a character or with a stray one.
    rng = random.Random(11)
    leaves = [0, -7, 12345678901234567890, 2.5, -1e-5, 1e300, "x", 'é\n\\"', "", None, True, [], {}]
    for _ in range(1500):
        value = _random_value(rng, rng.randint(0, 6), leaves, least=0)
        text = _spaced(rng, json.dumps(value))
        cut = rng.randint(0, len(text))
        text = rng.choice(
            [
                text,
                text[:cut],
                text[:cut] + text[cut + 1 :],
                text[:cut] + rng.choice('[]{},:" 1x') + text[cut:],
            ]
        )
        if text.strip():
            deep = _outcome(lambda t, s: json_dialect._Deep(t).parse(s), text)
            assert deep == _outcome(_recursive, text), text


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "JSON Parse error: The document is empty"),
        (b" \n", "JSON Parse error: The document is empty. at offset: 2"),
        (b"1", "JSON Value: 1 Is not object"),
        (b'["x", {}]', 'JSON Value: ["x", {}] Is not object'),
        # A high surrogate must be followed at once by a low one; a low one alone is invalid.
        (b'{"a": "\\ud800x"}', "surrogate pair in string is invalid. at offset: 13"),
        (b'{"a": "\\ud800\\n"}', "surrogate pair in string is invalid. at offset: 13"),
        (b'{"a": "\\ud800\\ud800"}', "surrogate pair in string is invalid. at offset: 13"),
        (b'{"a": "\\ud800 \\udc00"}', "surrogate pair in string is invalid. at offset: 13"),
        (b'{"a": "\\uD800', "surrogate pair in string is invalid. at offset: 13"),
        (b'{"a": "\\uDC00"}', "surrogate pair in string is invalid. at offset: 7"),
        (b'{"a": "\\udfff"}', "surrogate pair in string is invalid. at offset: 7"),
    ],
)
def test_whole_parse_error_messages(body, message):
    with pytest.raises(ServingError) as error:
        parse_json_object(body)
    if "surrogate" in message:
        message = "JSON Parse error: The " + message
    assert error.value.message == message


def test_surrogate_pairs_in_either_case_and_other_escapes_parse():
    body = b'{"a": "x\\ny\\u00e9", "b": "\\uD83D\\uDE00", "c": "\\ud83d\\ude00", "d": "\\uDBFF\\uDFFF"}'
    expected = {"a": "x\nyé", "b": "😀", "c": "😀", "d": "\U0010ffff"}
    assert parse_json_object(body) == expected
    # The same on the slow path (orjson takes valid pairs itself): a repeated key sends it there.
    assert parse_json_object(body[:-1] + b', "a": 0}') == expected


def test_integers_beyond_64_bits_become_doubles():
    # rapidjson keeps int64 and uint64 values exact and stores anything bigger as a double.
    for text in ("-9223372036854775808", "18446744073709551615", "0", "-5"):
        value = json_dialect._slow_parse(b'{"a": %s}' % text.encode())["a"]
        assert (type(value), value) == (int, int(text))
    for text in ("-9223372036854775809", "18446744073709551616", "99999999999999999999"):
        for body in (b'{"a": %s}', b'{"a": %s, "a": 0}'):  # orjson, then the slow path
            value = parse_json_object(body % text.encode())["a"]
            assert (type(value), value) == (float, float(text))


def test_a_body_without_repeated_keys_is_parsed_by_orjson_alone(monkeypatch):
    def slow(body):
        raise AssertionError("took the slow path")

    monkeypatch.setattr(json_dialect, "_slow_parse", slow)
    assert parse_json_object(b'{"a": [1, 2.5, "x"], "b": {"c": null}}') == {
        "a": [1, 2.5, "x"],
        "b": {"c": None},
    }


def test_repeated_keys_are_detected_by_their_quoted_token():
    assert json_dialect._may_repeat_keys(b'{"a": 1, "b": "a"}', {"a": 1, "b": "a"})
    assert not json_dialect._may_repeat_keys(b'{"a": 1, "b": 2}', {"a": 1, "b": 2})


@pytest.mark.parametrize(
    "text",
    [
        '["]", 1 2]',  # a bracket inside a string does not open anything
        '{"a": "\\"[", "b": 1 2}',  # nor after an escaped quote
        '{"a": "\\\\", "b": [1 2]}',  # an escaped backslash ends no string
        '[{"a": 1} 2]',
        '{"a": [1] "b"}',
        '{"a": [[1] ] ]}',  # more closing brackets than open arrays
        '{"a": [[1]\n]\t] }',
        "[[[1] ], 2 ]",
        '{"a": {"b": [[]] } }',
        '{"": {"a": [1 2]}}',  # an empty string closes at its second quote
    ],
)
def test_both_parsers_report_the_same_on_tricky_documents(text):
    assert _outcome(lambda t, s: json_dialect._Deep(t).parse(s), text) == _outcome(_recursive, text)


def test_debug_string_renders_like_rapidjson_pretty_writer():
    value = {"a": [1, 2.5, "é", None, True, False, {}, []], "b": {"c": {"d": 0.1}}}
    assert debug_string(value) == (
        '{\n    "a": [1, 2.5, "é", null, true, false, {}, []],\n'
        '    "b": {\n        "c": {\n            "d": 0.1\n        }\n    }\n}'
    )


def test_debug_string_of_deep_objects_is_capped_without_recursing_deeply():
    value = 1
    for _ in range(5000):
        value = {"k": value}
    assert debug_string(value).startswith('{\n    "k": {\n        "k": {')
    assert len(debug_string(value)) == 256


def test_too_big_numbers_and_the_slow_path():
    for body, offset in ((b'{"a": 1e999}', 6), (b"-1e400", 0), (b'{"a": [1, 2e308]}', 10)):
        with pytest.raises(ServingError) as error:
            parse_json_object(body)
        assert error.value.message == (
            f"JSON Parse error: Number too big to be stored in double. at offset: {offset}"
        )
    # Leading white space before a document only the slow path takes (a repeated key).
    assert parse_json_object(b' \n{"a": 1, "a": 2, "Inf": Inf}') == {"a": 1, "Inf": math.inf}


def test_debug_string_is_the_first_256_characters(monkeypatch):
    value = {f"key{i}": [i, {"x": "y" * i}] for i in range(40)}
    cut = debug_string(value)
    monkeypatch.setattr(json_dialect, "_DEBUG_CAP", 10**9)
    whole = debug_string(value)
    assert len(cut) == 256 and len(whole) > 1000 and whole.startswith(cut)


def test_json_type_names():
    values = [None, True, False, {}, [], "s", 1, 1.5]
    assert [json_dialect.json_type(v) for v in values] == [
        "Null",
        "True",
        "False",
        "Object",
        "Array",
        "String",
        "Number",
        "Number",
    ]


def test_b64_objects():
    assert json_dialect.decode_b64({"b64": "aGk"}) == b"hi"  # padding is optional
    assert json_dialect.decode_b64({"b64": " aGk= "}) == b"hi"
    assert not json_dialect.is_b64_object({"b64": "aGk=", "c": 1})
    assert not json_dialect.is_b64_object(["aGk="]) and not json_dialect.is_b64_object({"b64": 1})
    with pytest.raises(ServingError) as error:
        json_dialect.decode_b64({"b64": 1})
    assert error.value.message == (
        'JSON Value: {\n    "b64": 1\n} not formatted correctly for base64 data'
    )
    for text in ("é", "a", "a-_b"):
        with pytest.raises(ServingError) as error:
            json_dialect.decode_b64({"b64": text})
        assert error.value.message == "Unable to base64 decode"


def test_write_decimal_double_and_float():
    doubles = [0.1, 1 / 3, 1e20, 100.0, 1e-7, 2.5, -0.0, float("nan"), float("-inf"), 1e-7 / 3]
    assert [json_dialect.format_double(v) for v in doubles] == [
        "0.1",
        "0.33333333333333331",
        "1e+20",
        "100.0",
        "1e-07",
        "2.5",
        "-0.0",
        "NaN",
        "-Infinity",
        "3.3333333333333334e-08",
    ]
    floats = [1 / 3 * 1e-10, 1e20, 0.1, 16777216.0]
    assert [json_dialect.format_float(float(np.float32(v))) for v in floats] == [
        "3.33333326e-11",
        "1e+20",
        "0.1",
        "16777216.0",
    ]


@pytest.mark.parametrize(
    "deepest, built",
    [
        ("[0, [1]]", [0]),  # an array opened on its own (was attached as None too)
        ("[0, [[1]]]", [0]),  # a run of arrays
        ('[0, {"b": [1]}]', [0]),  # an object (was attached as None)
        ("[[[1]]]", []),  # a run of arrays across the limit
        ("[1]", [1]),  # values in the deepest built container are kept
    ],
)
def test_containers_deeper_than_keep_depth_are_not_built(deepest, built):
    # `deepest` is the _KEEP_DEPTH-th container: what it holds that is a container is
    # checked, not built.
    outer = json_dialect._KEEP_DEPTH - 1
    value = json_dialect._Deep("[" * outer + deepest + "]" * outer).parse(0)
    for _ in range(outer):
        [value] = value
    assert value == built
