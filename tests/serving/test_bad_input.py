"""Malformed requests get 400 with a clear message (never 500), and the
metrics page survives them; deeply nested JSON is parsed like TF Serving.

Cases marked `ours` are stricter than TF Serving (see serving/README.md).
"""

import http.client
import json
import socket
import threading
import time

import pytest
import requests

HP2 = "/v1/models/half_plus_two"
MULTI = "/v1/models/multi"


def ours(*values):
    return pytest.param(*values, marks=pytest.mark.ours)


def post(url, path, body: bytes):
    return requests.post(url + path, data=body, timeout=60)


def error_of(response) -> str:
    assert response.headers["Content-Type"] == "application/json", response.text
    return response.json()["error"]


@pytest.mark.parametrize(
    "path, body, fragment",
    [
        # invalid UTF-8 in the body: as a key, as a value, as a signature name
        ours(HP2 + ":predict", b'{"instances": [1.0], "\xff": 1}', "Invalid encoding in string."),
        ours(MULTI + ":predict", b'{"instances": [{"name": "\xff\xfe"}]}', "Invalid encoding"),
        ours(
            HP2 + ":predict", b'{"signature_name": "\xc3", "instances": [1.0]}', "Invalid encoding"
        ),
        # a lone surrogate escape (rapidjson rejects it)
        (
            HP2 + ":predict",
            b'{"signature_name": "\\ud800", "instances": [1.0]}',
            "The surrogate pair in string is invalid.",
        ),
        (MULTI + ":predict", b'{"instances": [{"name": "\\udc00"}]}', "surrogate pair"),
        # integers far beyond a double
        (
            HP2 + ":predict",
            b'{"instances": [' + b"9" * 5000 + b"]}",
            "Number too big to be stored in double.",
        ),
        (HP2 + ":predict", b'{"instances": [-' + b"1" * 4400 + b"]}", "Number too big"),
        # 33 dimensions (numpy's limit is 32) and ~990 levels (Python's recursion limit)
        ours(
            HP2 + ":predict",
            b'{"instances": ' + b"[" * 33 + b"1.0" + b"]" * 33 + b"}",
            "at most 32 dimensions",
        ),
        ours(
            HP2 + ":predict",
            b'{"inputs": ' + b"[" * 33 + b"1.0" + b"]" * 33 + b"}",
            "at most 32 dimensions",
        ),
        ours(
            HP2 + ":predict",
            b'{"instances": ' + b"[" * 990 + b"1.0" + b"]" * 990 + b"}",
            "at most 32 dimensions",
        ),
        ours(
            HP2 + ":predict",
            b'{"inputs": {"x": ' + b"[" * 990 + b"1" + b"]" * 990 + b"}}",
            "at most 32 dimensions",
        ),
    ],
)
def test_bad_body_is_400(rest_url, path, body, fragment):
    response = post(rest_url, path, body)
    assert response.status_code == 400, response.text
    assert fragment in error_of(response)


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/v1/models/%ff"),
        ("GET", "/v1/models/%ff/metadata"),
        ("POST", "/v1/models/%c3%28:predict"),
        ("GET", "/v1/models/half_plus_two/labels/%ff"),
    ],
)
@pytest.mark.ours
def test_invalid_utf8_in_url_is_400(rest_url, method, path):
    response = requests.request(method, rest_url + path, data=b'{"instances": [1.0]}', timeout=60)
    assert response.status_code == 400, response.text
    assert "not valid UTF-8" in error_of(response)


def test_huge_version_number_is_400(rest_url):
    response = requests.get(rest_url + HP2 + "/versions/" + "9" * 5000, timeout=60)
    assert response.status_code == 400
    assert response.text == ""  # as TF Serving answers any version that overflows int64


@pytest.mark.ours
def test_metrics_render_after_bad_names_and_unknown_models_share_a_label(rest_url):
    requests.get(rest_url + "/v1/models/%ff", timeout=60)
    for i in range(3):
        post(rest_url, f"/v1/models/no_such_model_{i}:predict", b'{"instances": [1.0]}')
    post(rest_url, HP2 + ":predict", b'{"instances": [1.0]}')
    response = requests.get(rest_url + "/monitoring/prometheus/metrics", timeout=60)
    assert response.status_code == 200
    assert "no_such_model" not in response.text
    assert 'model_name="__unknown__",status="NOT_FOUND"' in response.text
    assert 'model_name="half_plus_two",status="OK"' in response.text


# -- JSON nested 500,000 levels deep (TF Serving's json_tensor_test) -----------


def _deep(prefix: bytes, depth: int = 500_000) -> bytes:
    return prefix + b"[" * depth + b"]" * depth + b"}"


def test_deeply_nested_unknown_key_is_ignored(rest_url):
    body = _deep(b'{"instances": [[1.0], [2.0]], "nested": ')
    response = post(rest_url, HP2 + "/versions/123:predict", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [[2.5], [3.0]]}


def test_deeply_nested_signature_name_is_rejected(rest_url):
    response = post(rest_url, HP2 + ":predict", _deep(b'{"signature_name": '))
    assert response.status_code == 400
    assert "'signature_name' key must be a string value" in error_of(response)


@pytest.mark.parametrize(
    "body, fragment",
    [
        (
            b'{"instances": [1.0], "nested": ' + b"[" * 5000 + b"]" * 4999 + b"}",
            "Missing a comma or ']'",
        ),
        (
            b'{"instances": [1.0], "nested": ' + b"[{" * 3000 + b"}",
            "Missing a name for object member.",
        ),
        (
            b'{"instances": [1.0], "n": ' + b'[{"a":' * 3000 + b"1" + b"}]" * 3000,
            "Missing a comma or '}'",
        ),
        ours(
            b'{"instances": ' + b"[" * 3000 + b"1.0" + b"]" * 3000 + b"}", "at most 32 dimensions"
        ),
    ],
)
def test_deeply_nested_errors(rest_url, body, fragment):
    response = post(rest_url, HP2 + ":predict", body)
    assert response.status_code == 400, response.text
    assert fragment in error_of(response)


def test_deep_object_nesting_with_first_key_wins(rest_url):
    deep = b'{"a": ' * 2000 + b"1" + b"}" * 2000
    body = b'{"instances": [[2.0]], "x": ' + deep + b', "instances": [[9.0]]}'
    response = post(rest_url, HP2 + "/versions/123:predict", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [[3.0]]}


@pytest.mark.slow
@pytest.mark.ours
def test_big_deep_body_is_parsed_off_the_event_loop(rest_url):
    """While a slow 3.6 MB body (600,000 levels of `[{"k": `) is parsed, other
    requests keep being answered."""
    deep = b'{"instances": [[2.0]], "n": ' + b'[{"k": ' * 600_000 + b"1" + b"}]" * 600_000 + b"}"
    host, port = rest_url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=120)
    head = f"POST {HP2}/versions/123:predict HTTP/1.1\r\nContent-Length: {len(deep)}\r\n\r\n"
    sock.sendall(head.encode() + deep)
    answer = []

    def read_answer():
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer.append((response.status, json.loads(response.read())))

    reader = threading.Thread(target=read_answer, daemon=True)
    reader.start()
    answered_meanwhile = 0
    session = requests.Session()
    deadline = time.monotonic() + 120
    while reader.is_alive() and time.monotonic() < deadline:
        response = session.post(
            rest_url + HP2 + "/versions/123:predict", data=b'{"instances": [[1.0]]}', timeout=60
        )
        assert response.json() == {"predictions": [[2.5]]}
        answered_meanwhile += reader.is_alive()
    reader.join(60)
    sock.close()
    assert answer == [(200, {"predictions": [[3.0]]})]
    # On the event loop, the parse (~2 s of CPU) would hold every other client.
    assert answered_meanwhile >= 5
