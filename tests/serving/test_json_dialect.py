"""The request JSON dialect: iterative parsing of deep documents, strictness."""

import json
import random

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
