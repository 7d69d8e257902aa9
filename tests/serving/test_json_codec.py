"""Unit tests of the JSON dialect, request decoding and response encoding."""

import json
import random
import warnings

import numpy as np
import pytest
from tensorflow.core.framework import types_pb2 as T

from serving import json_codec as jc
from serving import json_response as jr
from serving.errors import Code, ServingError
from serving.json_dialect import format_float, parse_json_object

FLOAT = {"x": T.DT_FLOAT}


def decode(body: bytes, inputs=FLOAT):
    doc = parse_json_object(body)
    return jc.decode_predict_inputs(doc, inputs, body)


@pytest.mark.parametrize(
    "values, tokens",
    [
        (
            [9000000, 999999, 0.5, 0.0003, 0.00003, 555557.5],
            ["9e+06", "999999.0", "0.5", "0.0003", "3e-05", "555557.5"],
        ),
        ([1.0 / 3.0], ["0.333333343"]),
        ([float("nan"), float("inf"), -float("inf")], ["NaN", "Infinity", "-Infinity"]),
        ([1111111.0], ["1111111.0"]),
    ],
)
def test_write_decimal_float(values, tokens):
    assert [format_float(float(np.float32(v))) for v in values] == tokens


def test_row_and_columnar_shapes():
    tensors, row = decode(b'{"instances": [[1, 2], [3, 4], [5, 6]]}', {"x": T.DT_INT32})
    assert row and tensors["x"].shape == (3, 2) and tensors["x"].dtype == np.int32
    tensors, row = decode(b'{"inputs": 3.0}')
    assert not row and tensors["x"].shape == ()
    tensors, _ = decode(b'{"inputs": []}')
    assert tensors["x"].shape == (0,)
    tensors, _ = decode(b'{"instances": [[]]}')
    assert tensors["x"].shape == (1, 0)


def test_float_overflow_and_precision():
    tensors, _ = decode(b'{"instances": [1e300, -1e300, 1e-300, 1435774380]}')
    x = tensors["x"]
    assert np.isinf(x[0]) and np.isinf(x[1]) and x[2] == 0.0
    assert x[3] == np.float32(1435774380)


def test_json_dialect():
    assert parse_json_object(b'{"a": 1, "a": 2}') == {"a": 1}
    assert parse_json_object(b'{"a": [NaN, Inf, -Infinity]} junk')["a"][1] == float("inf")
    assert parse_json_object(b'{"a": "Inf"}') == {"a": "Inf"}
    assert parse_json_object(b'{"a": 123456789012345678901234567890}')["a"] == pytest.approx(
        1.2345678901234568e29
    )


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"   ", "JSON Parse error: The document is empty. at offset: 3"),
        (b'{"a" 1}', "Missing a colon after a name of object member."),
        (b'{"a": [1, 2}', "Missing a comma or ']' after an array element."),
        (b'{"a": 1 "b"}', "Missing a comma or '}' after an object member."),
        (b"[1]", "JSON Value: [1] Is not object"),
    ],
)
def test_parse_errors(body, message):
    with pytest.raises(ServingError) as error:
        parse_json_object(body)
    assert message in error.value.message
    assert error.value.code == Code.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "body, inputs, message, code",
    [
        (
            b'{"instances": [1, "a"]}',
            FLOAT,
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
            'JSON Value: "a" Type: String is not of expected type: float',
            Code.INVALID_ARGUMENT,
        ),
        (
            b'{"instances": [1.5]}',
            {"x": T.DT_INT64},
            "Type: Number is not of expected type: int64",
            Code.INVALID_ARGUMENT,
        ),
        (
            b'{"instances": [3000000000]}',
            {"x": T.DT_INT32},
            "is not of expected type: int32",
            Code.INVALID_ARGUMENT,
        ),
        (
            b'{"instances": [1]}',
            {"x": T.DT_BOOL},
            "is not of expected type: bool",
            Code.INVALID_ARGUMENT,
        ),
        (
            b'{"instances": [{"b64": "aGk="}]}',
            FLOAT,
            "Type: Object is not of expected type: float",
            Code.INVALID_ARGUMENT,
        ),
        (
            b'{"inputs": [1.0]}',
            {"x": T.DT_HALF},
            "Conversion of JSON Value: 1.0 to type: half",
            Code.UNIMPLEMENTED,
        ),
        (
            b'{"inputs": [[1.0], 2.0]}',
            FLOAT,
            "JSON Value: 2.0 found at incorrect level: 2 in the JSON DOM. Expected at level: 2",
            Code.INVALID_ARGUMENT,
        ),
        (
            b'{"inputs": [[1.0], [2.0, 3.0]]}',
            FLOAT,
            "Encountered list at unexpected size: 2 at level: 1 expected size: 1",
            Code.INVALID_ARGUMENT,
        ),
        (
            b'{"instances": [[1.0], [1.0, 2.0]]}',
            FLOAT,
            "Expecting tensor size: 1 but got: 2",
            Code.INVALID_ARGUMENT,
        ),
        (
            b'{"instances": [[[1.0, 2.0]], [[1.0], [2.0]]]}',
            FLOAT,
            "Expecting shape [1,2] but got: [2,1]",
            Code.INVALID_ARGUMENT,
        ),
        (
            b'{"instances": [{"b64": "-_"}]}',
            {"x": T.DT_STRING},
            "Unable to base64 decode",
            Code.INVALID_ARGUMENT,
        ),
        (
            b'{"instances": [null]}',
            FLOAT,
            "Type: Null is not of expected type: float",
            Code.INVALID_ARGUMENT,
        ),
    ],
)
def test_tensor_errors(body, inputs, message, code):
    with pytest.raises(ServingError) as error:
        decode(body, inputs)
    assert message in error.value.message
    assert error.value.code == code


def test_strings_and_b64():
    tensors, _ = decode(b'{"instances": ["a", {"b64": "aGk="}]}', {"x": T.DT_STRING})
    assert tensors["x"].tolist() == [b"a", b"hi"]


def test_predict_response_formats():
    y = np.array([[1.0], [2.5]], np.float32)
    assert (
        jr.encode_predict_response({"y": y}, True).replace(b"\n", b"").replace(b" ", b"")
        == b'{"predictions":[[1.0],[2.5]]}'
    )
    multi = jr.encode_predict_response(
        {"a": np.array([1, 2]), "img_bytes": np.array([b"hi", b"yo"], dtype=object)}, True
    )
    import json

    assert json.loads(multi) == {
        "predictions": [
            {"a": 1, "img_bytes": {"b64": "aGk="}},
            {"a": 2, "img_bytes": {"b64": "eW8="}},
        ]
    }
    assert json.loads(jr.encode_predict_response({"s": np.float32(3.0)}, False)) == {"outputs": 3.0}
    assert json.loads(jr.encode_predict_response({"y": np.zeros((0, 2), np.float32)}, True)) == {
        "predictions": []
    }
    with pytest.raises(ServingError, match="has no shape information"):
        jr.encode_predict_response({"s": np.float32(3.0)}, True)
    with pytest.raises(ServingError, match="has inconsistent batch size: 3 expecting: 2"):
        jr.encode_predict_response({"a": np.zeros(2), "b": np.zeros(3)}, True)


def test_examples_from_json():
    doc = {"context": {"c": "x"}, "examples": [{"f": 1.0, "i": 2, "b": True, "s": ["a", "b"]}]}
    examples, context = jc.decode_examples(doc)
    feature = examples[0].features.feature
    assert list(feature["f"].float_list.value) == [1.0]
    assert list(feature["i"].int64_list.value) == [2]
    assert list(feature["b"].int64_list.value) == [1]
    assert list(feature["s"].bytes_list.value) == [b"a", b"b"]
    assert context.features.feature["c"].bytes_list.value == [b"x"]


def test_error_body_escaping():
    assert jr.encode_error('Bad key: "key"') == b'{\n    "error": "Bad key: \\"key\\""\n}'


_RANDOM_LEAVES = {
    T.DT_FLOAT: [0, 1, -2, 0.5, 1e300, 3.25, 2**40, -(2**63), 2**60 + 2**36 + 1],
    T.DT_DOUBLE: [0, -1, 0.1, 1e-300, 2**53 + 1, 7.5],
    T.DT_INT32: [0, 1, -(2**31), 2**31 - 1, 2**31, -(2**31) - 1, 1.5],
    T.DT_INT16: [0, 7, -(2**31), 2**31 - 1, 2**31],
    T.DT_INT8: [0, -3, 2**31 - 1],
    T.DT_UINT8: [0, 9, -(2**31)],
    T.DT_INT64: [0, -5, 2**63 - 1, -(2**63), 2**63, 1.0],
    T.DT_UINT32: [0, 4, 2**32 - 1, 2**32, -1],
    T.DT_UINT64: [0, 6, 2**64 - 1, -1, 2**63],
    T.DT_BOOL: [True, False],
    T.DT_STRING: ["", "a", "é", {"b64": "aGk="}, {"b64": "-_"}],
}
_STRANGERS = [True, False, "s", None, 2.5, {"b64": "aGk="}, {"x": 1}]


def _random_item(rng, dtype, shape):
    if not shape:
        leaves = _RANDOM_LEAVES[dtype]
        return rng.choice(_STRANGERS) if rng.random() < 0.03 else rng.choice(leaves)
    return [_random_item(rng, dtype, shape[1:]) for _ in range(shape[0])]


def _outcome(decode_, *args):
    try:
        tensors = decode_(*args)
    except ServingError as e:
        return "error", e.code, e.message
    return "tensors", {k: (v.dtype.str, v.shape, v.tolist()) for k, v in sorted(tensors.items())}


def _exact(doc, inputs):
    if "instances" in doc:
        return jc._rows_exact(doc["instances"], inputs)
    return {n: jc._exact_tensor(doc["inputs"][n], inputs[n])[0] for n in sorted(inputs)}


def _fast_or_exact(doc, inputs):
    return jc.decode_predict_inputs(doc, inputs, json.dumps(doc).encode())[0]


def test_fast_path_gives_what_the_exact_path_gives():
    # The numpy fast path is an optimisation: on any request, valid or not, the result
    # (tensors, or the upstream error) must be the exact path's.
    rng = random.Random(5)
    dtypes = list(_RANDOM_LEAVES)
    fast = 0
    for _ in range(600):
        names = rng.sample("abcd", rng.randint(1, 3))
        inputs = {name: rng.choice(dtypes) for name in names}
        shapes = {name: rng.choice([[], [2], [1, 2], [0]]) for name in names}
        rows = rng.randint(1, 3)
        if len(names) == 1 and rng.random() < 0.5:
            [(name, dtype)] = inputs.items()
            doc = {"instances": [_random_item(rng, dtype, shapes[name]) for _ in range(rows)]}
        elif rng.random() < 0.5:
            instances = [
                {n: _random_item(rng, inputs[n], shapes[n]) for n in names} for _ in range(rows)
            ]
            doc = {"instances": instances}
        else:
            doc = {"inputs": {n: _random_item(rng, inputs[n], [rows, *shapes[n]]) for n in names}}
        with np.errstate(over="ignore"):
            assert _outcome(_fast_or_exact, doc, inputs) == _outcome(_exact, doc, inputs), doc
        fast += "instances" in doc and jc._rows_fast(doc["instances"], inputs, True) is not None
    assert fast > 50  # the fast path did take the well-formed requests


TWO = {"a": T.DT_FLOAT, "b": T.DT_INT64}
XY2 = {"a": T.DT_FLOAT, "b": T.DT_FLOAT}
ROW = "Failed to process element: {} of 'instances' list. Error: INVALID_ARGUMENT: "


@pytest.mark.parametrize(
    "body, inputs, message",
    [
        (
            b'{"instances": [1, 2], "inputs": [1]}',
            FLOAT,
            'JSON Value: {\n    "instances": [1, 2],\n    "inputs": [1]\n} Not formatted '
            "correctly expecting only one of 'inputs' or 'instances' keys to exist ",
        ),
        (
            b'{"instances": {"x": 1}}',
            FLOAT,
            'JSON Value: {\n    "instances": {\n        "x": 1\n    }\n} '
            "Expecting 'instances' to be an list/array",
        ),
        (
            b'{"instances": []}',
            FLOAT,
            "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array",
        ),
        (b'{"signature_name": "s"}', FLOAT, "Missing 'inputs' or 'instances' key"),
        (
            b'{"instances": [1, 2]}',
            TWO,
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map",
        ),
        (
            b'{"instances": [{"a": 1, "b": 2}, [1]]}',
            TWO,
            "Expecting object but got list at item 1 of input list",
        ),
        (
            b'{"instances": [{"a": 1, "z": 2}]}',
            TWO,
            "Failed to process element: 0 key: z of 'instances' list. Error: "
            "INVALID_ARGUMENT: JSON object: does not have named input: z",
        ),
        (
            b'{"instances": [{"a": 1}]}',
            TWO,
            "Failed to process element: 0 of 'instances' list. JSON object: "
            '{\n    "a": 1\n} keys must be equal to: a,b',
        ),
        (
            b'{"instances": [1, {"x": 2}]}',
            FLOAT,
            "Expecting value/list but got object at item 1 of input list",
        ),
        (
            b'{"instances": [[1], [[2]]]}',
            FLOAT,
            ROW.format(1) + "Expecting shape [1] but got: [1,1]",
        ),
        (
            b'{"instances": [[1.0], [1.0, 2.0]]}',
            FLOAT,
            ROW.format(1) + "Expecting tensor size: 1 but got: 2",
        ),
        (b'{"inputs": [1, [2]]}', FLOAT, "Encountered list at unexpected level: 1 expected < 1"),
        (
            b'{"inputs": [1, 2]}',
            TWO,
            "inputs is a plain value/list, but expecting an object as multiple input "
            "tensors required as per tensorinfo_map",
        ),
        (b'{"inputs": {"a": [1]}}', TWO, "Missing named input: b in 'inputs' object."),
        (
            b'{"instances": [' + b"[" * 32 + b"1" + b"]" * 32 + b"]}",
            FLOAT,
            ROW.format(0) + "JSON value nested more than 32 levels deep: "
            "tensors have at most 32 dimensions",
        ),
        (
            b'{"inputs": ' + b"[" * 33 + b"1" + b"]" * 33 + b"}",
            FLOAT,
            "JSON value nested more than 32 levels deep: tensors have at most 32 dimensions",
        ),
        (
            b'{"instances": [true]}',
            FLOAT,
            ROW.format(0) + "JSON Value: true Type: True is not of expected type: float",
        ),
        (
            b'{"instances": [1]}',
            {"x": T.DT_BOOL},
            ROW.format(0) + "JSON Value: 1 Type: Number is not of expected type: bool",
        ),
        (
            b'{"instances": [false, 1.0]}',
            FLOAT,
            ROW.format(0) + "JSON Value: false Type: False is not of expected type: float",
        ),
        (
            b'{"instances": [{"a": true, "b": 1.0}]}',
            {"a": T.DT_FLOAT, "b": T.DT_FLOAT},
            "Failed to process element: 0 key: a of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON Value: true Type: True is not of expected type: float",
        ),
        (
            b'{"instances": [1]}',
            {"x": T.DT_STRING},
            ROW.format(0) + "JSON Value: 1 Type: Number is not of expected type: string",
        ),
        (
            b'{"instances": [18446744073709551615]}',
            {"x": T.DT_INT64},
            ROW.format(0) + "JSON Value: 18446744073709551615 Type: Number is not of "
            "expected type: int64",
        ),
        (
            b'{"instances": [{"b64": "aGk="}]}',
            FLOAT,
            ROW.format(0) + 'JSON Value: {\n    "b64": "aGk="\n} Type: Object is not of '
            "expected type: float",
        ),
    ],
)
def test_whole_request_error_messages(body, inputs, message):
    with pytest.raises(ServingError) as error:
        decode(body, inputs)
    assert (error.value.code, error.value.message) == (Code.INVALID_ARGUMENT, message)


def test_thirty_two_dimensions_are_allowed():
    # "true" in the body keeps the fast path out: these are the exact path's checks.
    tensors, _ = decode(b'{"b": true, "inputs": ' + b"[" * 32 + b"1" + b"]" * 32 + b"}")
    assert tensors["x"].shape == (1,) * 32
    tensors, _ = decode(b'{"b": true, "instances": [' + b"[" * 31 + b"1" + b"]" * 31 + b"]}")
    assert tensors["x"].shape == (1,) * 32


def test_signature_name_must_be_a_string():
    assert jc.read_signature_name({"instances": [1]}) == ""
    assert jc.read_signature_name({"signature_name": "s"}) == "s"
    with pytest.raises(ServingError) as error:
        jc.read_signature_name({"signature_name": 1})
    assert error.value.message == (
        'JSON Value: {\n    "signature_name": 1\n} not formatted correctly. '
        "'signature_name' key must be a string value."
    )


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"examples": [{"f": None}]}, "Feature: f has element with unexpected JSON type: Null"),
        ({"examples": [{"f": [[1]]}]}, "Feature: f has element with unexpected JSON type: Array"),
        (
            {"examples": [{"f": {"a": 1}}]},
            "Feature: f has element with unexpected JSON type: Object",
        ),
        (
            {"examples": [{"f": [1.0, 2]}]},
            "Unexpected element type in feature: f expecting type: float",
        ),
        (
            {"examples": [{"f": ["a", 1]}]},
            "Unexpected element type in feature: f expecting type: bytes",
        ),
        (
            {"examples": [{"f": [1, "a"]}]},
            "Unexpected element type in feature: f expecting type: int64",
        ),
        (
            {"examples": [{"f": [{"b64": "aGk="}, 1]}]},
            "Unexpected element type in feature: f expecting type: bytes",
        ),
        (
            {"examples": [{"f": [True, 1.5]}]},
            "Unexpected element type in feature: f expecting type: int64",
        ),
        (
            {"examples": [{"f": 18446744073709551615}]},
            "Feature: f has uint64_t element. Only int64_t is supported.",
        ),
        ({"examples": [[1]]}, "Example must be JSON object but got JSON Array"),
        ({"context": 1, "examples": [{}]}, "Example must be JSON object but got JSON Number"),
        (
            {},
            "JSON Value: {} When method is classify, key 'examples' is expected and was not found",
        ),
        (
            {"examples": {}},
            "JSON Value: {\n    \"examples\": {}\n} Expecting 'examples' value to be an list/array",
        ),
        (
            {"examples": []},
            "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array",
        ),
    ],
)
def test_whole_example_error_messages(doc, message):
    with pytest.raises(ServingError) as error:
        jc.decode_examples(doc)
    assert (error.value.code, error.value.message) == (Code.INVALID_ARGUMENT, message)


def test_example_values_of_every_kind():
    doc = {"examples": [{"i": [True, False, 2, 2**63 - 1], "b": {"b64": "aGk="}, "s": "é"}]}
    [example], context = jc.decode_examples(doc)
    feature = example.features.feature
    assert list(feature["i"].int64_list.value) == [1, 0, 2, 2**63 - 1]
    assert list(feature["b"].bytes_list.value) == [b"hi"]
    assert list(feature["s"].bytes_list.value) == ["é".encode()]
    assert context is None


@pytest.mark.parametrize(
    "body, inputs, expected",
    [
        (b'{"instances": [1, 2.5]}', FLOAT, {"x": ("<f4", [1.0, 2.5])}),
        (b'{"instances": [{"x": 1}, {"x": 2}]}', {"x": T.DT_DOUBLE}, {"x": ("<f8", [1.0, 2.0])}),
        (
            b'{"instances": [-2147483648, 2147483647]}',
            {"x": T.DT_INT32},
            {"x": ("<i4", [-(2**31), 2**31 - 1])},
        ),
        (b'{"instances": [0, 4294967295]}', {"x": T.DT_UINT32}, {"x": ("<u4", [0, 2**32 - 1])}),
        (b'{"instances": [-5, 7]}', {"x": T.DT_INT64}, {"x": ("<i8", [-5, 7])}),
        (b'{"instances": [true, false]}', {"x": T.DT_BOOL}, {"x": ("|b1", [True, False])}),
        (b'{"instances": ["a", "\u00e9"]}', {"x": T.DT_STRING}, {"x": ("|O", [b"a", b"\xc3\xa9"])}),
        (
            b'{"instances": [{"a": 1, "b": 2, "c": 3, "d": "s"}, {"a": 4, "b": 5.5, "c": 6, '
            b'"d": "t"}]}',
            {"a": T.DT_INT64, "b": T.DT_FLOAT, "c": T.DT_INT32, "d": T.DT_STRING},
            {
                "a": ("<i8", [1, 4]),
                "b": ("<f4", [2.0, 5.5]),
                "c": ("<i4", [3, 6]),
                "d": ("|O", [b"s", b"t"]),
            },
        ),
        (
            b'{"inputs": {"a": [1, 2], "b": [0.5]}}',
            {"a": T.DT_INT64, "b": T.DT_FLOAT},
            {"a": ("<i8", [1, 2]), "b": ("<f4", [0.5])},
        ),
        (b'{"inputs": []}', FLOAT, {"x": ("<f4", [])}),
        (b'{"instances": [5]}', FLOAT, {"x": ("<f4", [5.0])}),
        (b'{"instances": [{"a": 1, "b": 2}]}', XY2, {"a": ("<f4", [1.0]), "b": ("<f4", [2.0])}),
    ],
)
def test_well_formed_requests_take_the_fast_path(monkeypatch, body, inputs, expected):
    # One numpy call per feature (per dtype group for scalars): the exact, per-value
    # path is never entered for these.
    def exact(*args, **kwargs):
        raise AssertionError("took the exact path")

    monkeypatch.setattr(jc, "_rows_exact", exact)
    monkeypatch.setattr(jc, "_exact_tensor", exact)
    tensors, _ = decode(body, inputs)
    assert {k: (v.dtype.str, v.tolist()) for k, v in tensors.items()} == expected


def test_the_dtype_plan_is_cached_per_signature_and_bounded():
    inputs = {"a": T.DT_FLOAT, "b": T.DT_INT32, "c": T.DT_FLOAT}
    plan = jc._plan(inputs)
    assert plan == ([(T.DT_FLOAT, ["a", "c"])], [("b", T.DT_INT32)])
    assert jc._plan(inputs) is plan
    assert jc._plan(dict(inputs)) is not plan  # another signature's dict
    signatures = [{"x": T.DT_FLOAT} for _ in range(300)]
    sizes = set()
    for signature in signatures:
        jc._plan(signature)
        sizes.add(len(jc._PLANS))
    assert max(sizes) == 257 and min(sizes) == 1  # cleared when it outgrows 256 entries


def test_a_b64_object_is_the_value_of_a_single_input():
    tensors, row = decode(b'{"inputs": {"b64": "aGk="}}', {"x": T.DT_STRING})
    assert not row and tensors["x"].tolist() == b"hi"


XY = {"x": T.DT_FLOAT, "y": T.DT_FLOAT}


@pytest.mark.parametrize(
    "body, inputs",
    [
        (b'{"instances": [%s]}', FLOAT),  # numpy fast path, one feature
        (b'{"inputs": [%s]}', FLOAT),  # columnar
        (b'{"instances": [{"x": %s, "y": 1}]}', XY),  # a dtype group of integer features
        (b'{"b": true, "instances": [%s]}', FLOAT),  # the exact path
    ],
)
def test_integers_reach_float32_through_double(body, inputs):
    # rapidjson's GetFloat is (float) GetDouble(): 2^60 + 2^36 + 1 is 2^60 + 2^36 as a
    # double, a tie that rounds to even (2^60) as a float; int64 straight to float32
    # would round up to 2^60 + 2^37.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no overflow warning for 1e300 either
        tensors, _ = decode(body % b"%d" % (2**60 + 2**36 + 1), inputs)
        assert int(tensors["x"][0]) == 2**60
        assert np.isinf(decode(body % b"1e300", inputs)[0]["x"][0])
