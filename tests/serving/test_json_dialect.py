"""The request JSON dialect: iterative parsing of deep documents, strictness."""

import json
import random

import pytest

from serving import json_dialect
from serving.errors import ServingError
from serving.json_dialect import debug_string, parse_json_object


def _random_value(rng: random.Random, depth: int):
    if depth == 0:
        return rng.choice([0, -7, 2.5, 1e300, "x", 'é\n\\"', None, True, False, [], {}])
    if rng.random() < 0.5:
        return [_random_value(rng, depth - 1) for _ in range(rng.randint(1, 3))]
    return {rng.choice("abc"): _random_value(rng, depth - 1) for _ in range(rng.randint(1, 3))}


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
