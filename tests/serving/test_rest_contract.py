"""REST contract tests (TF Serving's URLs, bodies, messages and status codes)."""

import base64
import math
import re

import pytest
import requests

HP2 = "/v1/models/half_plus_two"


def post(url, path, body):
    data = body if isinstance(body, (bytes, str)) else __import__("json").dumps(body)
    return requests.post(url + path, data=data, timeout=10)


def assert_error(response, status, fragment):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert fragment in response.json()["error"]


# -- predict ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, body, expected",
    [
        (
            HP2 + "/versions/123:predict",
            {"instances": [1.0, 2.0, 5.0]},
            {"predictions": [2.5, 3.0, 4.5]},
        ),
        (HP2 + ":predict", {"instances": [[1.0], [2.0]]}, {"predictions": [[3.5], [4.0]]}),
        (HP2 + "/versions/123:predict", {"instances": [[2.0]]}, {"predictions": [[3.0]]}),
        (HP2 + "/versions/124:predict", {"instances": [[2.0]]}, {"predictions": [[4.0]]}),
        (HP2 + "/labels/stable:predict", {"instances": [[2.0]]}, {"predictions": [[3.0]]}),
        (HP2 + "/labels/canary:predict", {"instances": [[2.0]]}, {"predictions": [[4.0]]}),
        (HP2 + ":predict", {"inputs": [[1.0], [2.0]]}, {"outputs": [[3.5], [4.0]]}),
        (HP2 + ":predict", {"inputs": {"x": [[1.0]]}}, {"outputs": [[3.5]]}),
        (HP2 + ":predict", {"instances": [{"x": [1.0]}]}, {"predictions": [[3.5]]}),
        (
            HP2 + ":predict",
            {"signature_name": "serving_default", "instances": [[2]]},
            {"predictions": [[4.0]]},
        ),
        ("/V1/MODELS/half_plus_two:predict", {"instances": [[2.0]]}, {"predictions": [[4.0]]}),
    ],
)
def test_predict_ok(rest_url, path, body, expected):
    response = post(rest_url, path, body)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == expected


def test_latest_is_highest_available_version(rest_url):
    assert post(rest_url, HP2 + ":predict", {"instances": [[0.0]]}).json() == {
        "predictions": [[3.0]]
    }


def test_predict_multi_input_named_rows_and_columns(rest_url):
    rows = post(
        rest_url,
        "/v1/models/multi:predict",
        {
            "instances": [
                {"name": "ann", "age": 30, "score": 0.5},
                {"name": {"b64": base64.b64encode(b"bob").decode()}, "age": 40, "score": -0.5},
            ]
        },
    )
    assert rows.status_code == 200, rows.text
    predictions = rows.json()["predictions"]
    assert predictions[0]["greeting"] == "ann!"
    assert predictions[1]["greeting"] == "bob!"
    assert predictions[0]["age_plus"] == 31
    assert predictions[1]["raw_bytes"] == {"b64": base64.b64encode(b"bob").decode()}
    assert 0.0 <= predictions[0]["probabilities"][0] <= 1.0
    columns = post(
        rest_url,
        "/v1/models/multi:predict",
        {"inputs": {"name": ["x", "y"], "age": [1, 2], "score": [0.0, 1.0], "extra": 1}},
    )
    assert columns.status_code == 200, columns.text
    assert columns.json()["outputs"]["greeting"] == ["x!", "y!"]


def test_nan_rows_are_read_as_the_exact_parser_reads_them(rest_url):
    # Missing values travel as NaN (serving/client.py). Each NaN token is a float NaN,
    # "NaN" inside a string stays text, a NaN signature name is refused.
    path = "/v1/models/multi:predict"
    plain = b'{"instances": [{"name": "a", "age": 1, "score": NaN}, {"name": "b", "age": 2, "score": 0.5}]}'
    flagged = plain[:-1] + b', "flag": true}'  # same rows, decoded another way
    response = post(rest_url, path, plain)
    assert response.status_code == 200, response.text
    assert response.content == post(rest_url, path, flagged).content
    predictions = response.json()["predictions"]
    assert math.isnan(predictions[0]["probabilities"][0])
    assert predictions[1]["probabilities"][0] == pytest.approx(1 / (1 + math.exp(-0.52)))
    text = post(rest_url, path, plain.replace(b'"a"', b'"NaN"').replace(b'"b"', b'"xNaNy"'))
    assert [p["greeting"] for p in text.json()["predictions"]] == ["NaN!", "xNaNy!"]
    for twice in (
        b'"signature_name": "serving_default"',
        b'"signature_n\\u0061me": "serving_default"',
    ):
        # the first of a repeated key counts, however it is spelled
        doubled = post(rest_url, path, b'{"signature_name": "nope", ' + twice + b", " + plain[1:])
        assert_error(doubled, 400, 'Serving signature name: "nope" not found')
    named = post(rest_url, path, plain[:-1] + b', "signature_name": NaN}')
    assert_error(named, 400, "'signature_name' key must be a string value")
    assert "NaN" in named.json()["error"] and "null" not in named.json()["error"]


def test_float_formatting_tokens(rest_url):
    # y = 0.5x + 2 in float32, written as TF Serving's WriteDecimal<float> does: 6
    # significant digits when they read back as the same float32, else 9; a whole
    # number keeps ".0"; large ones use an exponent.
    instances = [1.0, 0.2, 1e-7, 0.123456789, 2e9]
    response = post(rest_url, HP2 + "/versions/123:predict", {"instances": instances})
    assert response.status_code == 200, response.text
    tokens = re.findall(rb"[-+0-9.e]+", response.content.split(b"[", 1)[1])
    assert tokens == [b"2.5", b"2.1", b"2.0", b"2.06172848", b"1e+09"]


def test_nan_infinity_and_trailing_garbage(rest_url):
    response = post(
        rest_url,
        HP2 + "/versions/123:predict",
        b'{"instances": [[NaN], [Infinity], [-Infinity]]} trailing',
    )
    assert response.status_code == 200, response.text
    assert b"NaN" in response.content and b"-Infinity" in response.content


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        (b"", 400, "JSON Parse error: The document is empty"),
        (b"{", 400, "JSON Parse error"),
        (b"[1]", 400, "Is not object"),
        (
            {"instances": [1.0], "signature_name": 100},
            400,
            "'signature_name' key must be a string value.",
        ),
        ({"instances": ["a"]}, 400, "is not of expected type: float"),
        (
            {"instances": [1.0], "inputs": [1.0]},
            400,
            "expecting only one of 'inputs' or 'instances' keys to exist",
        ),
        ({"instances": 1.0}, 400, "to be an list/array"),
        ({"instances": []}, 400, "No values in 'instances' array"),
        ({"foo": 1}, 400, "Missing 'inputs' or 'instances' key"),
        ({"instances": [[1.0], [1.0, 2.0]]}, 400, "Expecting tensor size"),
        ({"instances": [[1.0], 2.0]}, 400, "Expecting shape"),
        ({"instances": [{"x": [1.0]}, [1.0]]}, 400, "Expecting object but got list"),
        ({"instances": [{"y": [1.0]}]}, 400, "does not have named input: y"),
        ({"instances": [True]}, 400, "Type: True is not of expected type: float"),
        (
            {"instances": [[1.0]], "signature_name": "nope"},
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
    ],
)
def test_predict_errors(rest_url, body, status, fragment):
    assert_error(post(rest_url, HP2 + ":predict", body), status, fragment)


def test_multi_input_errors(rest_url):
    assert_error(
        post(rest_url, "/v1/models/multi:predict", {"instances": ["a"]}),
        400,
        "instances is a plain list, but expecting list of objects",
    )
    assert_error(
        post(rest_url, "/v1/models/multi:predict", {"instances": [{"name": "a", "age": 1}]}),
        400,
        "keys must be equal to: age,name,score",
    )
    assert_error(
        post(
            rest_url,
            "/v1/models/multi:predict",
            {"instances": [{"name": "a", "age": 1.5, "score": 1.0}]},
        ),
        400,
        "is not of expected type: int64",
    )
    assert_error(
        post(rest_url, "/v1/models/multi:predict", {"inputs": {"name": ["a"]}}),
        400,
        "Missing named input: age in 'inputs' object.",
    )
    assert_error(
        post(rest_url, "/v1/models/multi:predict", {"inputs": [1]}),
        400,
        "inputs is a plain value/list, but expecting an object",
    )
    assert_error(
        post(
            rest_url,
            "/v1/models/multi:predict",
            {"instances": [{"name": {"b64": "%%%"}, "age": 1, "score": 1.0}]},
        ),
        400,
        "Unable to base64 decode",
    )


@pytest.mark.parametrize(
    "path, status, fragment",
    [
        ("/v1/models/missing:predict", 404, "Servable not found for request: Latest(missing)"),
        (
            HP2 + "/versions/999:predict",
            404,
            "Servable not found for request: Specific(half_plus_two, 999)",
        ),
        (HP2 + "/labels/nolabel:predict", 400, "Unrecognized servable version label: nolabel"),
        ("/v1/models/missing/labels/x:predict", 400, "Unrecognized servable version label: x"),
    ],
)
def test_model_lookup_errors(rest_url, path, status, fragment):
    assert_error(post(rest_url, path, {"instances": [[1.0]]}), status, fragment)


def test_malformed_body_wins_over_unknown_model(rest_url):
    assert_error(post(rest_url, "/v1/models/missing:predict", b"{"), 400, "JSON Parse error")


# -- classify / regress ---------------------------------------------------------


def test_classify_and_regress(rest_url):
    classify = post(
        rest_url,
        HP2 + "/versions/123:classify",
        {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]},
    )
    assert classify.json() == {"results": [[["", 12.0]]]}
    regress = post(
        rest_url,
        HP2 + "/labels/stable:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
    )
    assert regress.json() == {"results": [42.0]}
    context = post(
        rest_url,
        HP2 + "/versions/123:regress",
        {"signature_name": "regress_x_to_y", "context": {"x": 2.0}, "examples": [{}, {}]},
    )
    assert context.json() == {"results": [3.0, 3.0]}


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"signature_name": "regress_x_to_y"}, "key 'examples' is expected and was not found"),
        ({"examples": {}}, "Expecting 'examples' value to be an list/array"),
        ({"examples": []}, "'examples' value is an empty array"),
        ({"examples": [1]}, "Example must be JSON object but got JSON Number"),
        ({"examples": [{"x": None}]}, "Feature: x has element with unexpected JSON type: Null"),
        (
            {"examples": [{"x": [1.0, "a"]}]},
            "Unexpected element type in feature: x expecting type: float",
        ),
        (
            {"signature_name": "zzz", "examples": [{"x": 1.0}]},
            "No signature was found with the name: zzz",
        ),
        (
            {"signature_name": "regress_x_to_y", "examples": [{"x": 2}]},
            "Key: x, Index: 0.  Data types don't match. Data type: int64 but expected type: float",
        ),
    ],
)
def test_regress_errors(rest_url, body, fragment):
    assert_error(post(rest_url, HP2 + "/versions/123:regress", body), 400, fragment)


def test_classify_rejects_predict_signature(rest_url):
    assert_error(
        post(rest_url, HP2 + "/versions/123:classify", {"examples": [{"x": 1.0}]}),
        400,
        "No classification inputs found in SignatureDef: inputs {",
    )


# -- status / metadata ----------------------------------------------------------


def test_status(rest_url):
    expected = {
        "model_version_status": [
            {
                "version": "124",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            },
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            },
        ]
    }
    assert requests.get(rest_url + HP2, timeout=5).json() == expected
    assert requests.get(rest_url + HP2 + "/labels/whatever", timeout=5).json() == expected
    one = requests.get(rest_url + HP2 + "/versions/123", timeout=5).json()
    assert one == {"model_version_status": [expected["model_version_status"][1]]}


def test_status_errors(rest_url):
    assert_error(
        requests.get(rest_url + "/v1/models/missing", timeout=5),
        404,
        "Could not find any versions of model missing",
    )
    assert_error(
        requests.get(rest_url + HP2 + "/versions/7", timeout=5),
        404,
        "Could not find version 7 of model half_plus_two",
    )


def test_metadata(rest_url):
    body = requests.get(rest_url + HP2 + "/labels/stable/metadata", timeout=5).json()
    assert body["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "123"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    x = signatures["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"] == {
        "dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
        "unknown_rank": False,
    }
    assert {"classify_x_to_y", "regress_x_to_y", "serving_default"} <= set(signatures)


# -- URL grammar ------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, status, message",
    [
        ("GET", "/v1/models", 400, "Missing model name in request."),
        ("POST", "/v1/models", 400, "Malformed request: POST /v1/models"),
        ("POST", "/v1/models/foo/metadata", 400, "Malformed request: POST /v1/models/foo/metadata"),
        ("GET", "/v1/models/foo:predict", 400, "Malformed request: GET /v1/models/foo:predict"),
        ("POST", HP2, 400, "Malformed request: POST /v1/models/half_plus_two"),
        ("POST", HP2 + "/versions/HELLO:predict", 400, "Malformed request"),
        ("POST", HP2 + "/versions/50/labels/x:predict", 400, "Malformed request"),
        ("POST", HP2 + ":PREDICT", 400, "Malformed request"),
        (
            "POST",
            HP2 + ":predict?x=1",
            400,
            "Malformed request: POST /v1/models/half_plus_two:predict?x=1",
        ),
        ("GET", "/v1/models/foo/", 400, "Malformed request"),
        ("GET", "/v1/models/debug/model_name", 400, "Malformed request"),
        ("PUT", HP2, 400, "Malformed request: PUT /v1/models/half_plus_two"),
        ("DELETE", HP2, 400, "Malformed request: DELETE /v1/models/half_plus_two"),
    ],
)
def test_url_grammar(rest_url, method, path, status, message):
    response = requests.request(method, rest_url + path, data=b'{"instances": [1.0]}', timeout=5)
    assert_error(response, status, message)


def test_version_overflow_has_empty_body(rest_url):
    response = requests.get(rest_url + HP2 + "/versions/99999999999999999999", timeout=5)
    assert response.status_code == 400
    assert response.content == b""


def test_non_v1_path_is_html_404(rest_url):
    response = requests.get(rest_url + "/index", timeout=5)
    assert response.status_code == 404
    assert b"<H1>Not Found</H1>" in response.content


def test_options_preflight(rest_url):
    assert requests.options(rest_url + HP2, timeout=5).status_code == 400
    ok = requests.options(rest_url + HP2, headers={"Origin": "http://x"}, timeout=5)
    assert ok.status_code == 200 and ok.content == b""


def test_percent_decoded_model_name(rest_url):
    assert_error(
        post(rest_url, "/v1/models/a%2Fb:predict", {"instances": [1.0]}), 404, "Latest(a/b)"
    )


def test_prometheus_endpoint(rest_url):
    def ok_requests():
        response = requests.get(rest_url + "/monitoring/prometheus/metrics", timeout=5)
        assert response.status_code == 200
        assert "# TYPE :tensorflow:serving:request_count counter" in response.text
        line = ':tensorflow:serving:request_count{model_name="half_plus_two",status="OK"} '
        [count] = [x[len(line) :] for x in response.text.splitlines() if x.startswith(line)]
        return float(count)

    before = ok_requests()
    post(rest_url, HP2 + ":predict", {"instances": [[1.0]]})
    assert ok_requests() == before + 1  # one predict, counted once


@pytest.mark.ours
def test_request_too_large_gets_413(rest_url):
    response = requests.post(rest_url + HP2 + ":predict", data=b" " * (65 << 20), timeout=30)
    assert response.status_code == 413


@pytest.mark.ours
def test_gzip_request_body(rest_url):
    import gzip

    response = requests.post(
        rest_url + HP2 + "/versions/123:predict",
        data=gzip.compress(b'{"instances": [[2.0]]}'),
        headers={"Content-Encoding": "gzip"},
        timeout=5,
    )
    assert response.json() == {"predictions": [[3.0]]}


@pytest.mark.parametrize("name", ["..%2F..%2Fetc", "..", "%2Ftmp"])
def test_model_names_never_become_paths(rest_url, name):
    response = post(rest_url, f"/v1/models/{name}:predict", {"instances": [[1.0]]})
    assert response.status_code == 404
    assert "Servable not found for request: Latest(" in response.json()["error"]


@pytest.mark.ours
def test_expect_100_continue_and_keep_alive(rest_url):
    import http.client
    import urllib.parse

    parsed = urllib.parse.urlparse(rest_url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=5)
    body = b'{"instances": [[1.0]]}'
    for _ in range(3):  # several requests on one keep-alive connection
        conn.request(
            "POST", HP2 + "/versions/123:predict", body=body, headers={"Expect": "100-continue"}
        )
        response = conn.getresponse()
        assert response.status == 200
        assert b"2.5" in response.read()
    conn.close()
